//! Policy errors that say where (file, line, column, tree, level, key) and how
//! to fix it, and the parsed TOML document they point into.
//!
//! [`TomlDocument`] keeps the place of every key and value, so a wrong type is
//! reported as `limits.toml: line 7, column 9: trees[api].levels[user].limit:
//! expected a whole number, found the string "10"; remove the quotes: limit = 10`
//! rather than serde's `invalid type: string "10", expected i64`. Messages never
//! repeat more than a short piece of the input ([`cut`]).

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The most characters of a value from the file a message repeats.
pub const MAX_ECHO: usize = 60;
/// The longest message: anything longer is cut (a guard; messages cut their
/// echoed values to [`MAX_ECHO`] themselves).
const MAX_MESSAGE: usize = 400;

/// One problem in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or other source) the policy came from.
    pub source_name: String,
    /// 1-based line and column (in characters) of the problem, when known.
    pub location: Option<(usize, usize)>,
    /// The key path ("trees[t].levels[l].limit: ", "[server] http: ") or empty.
    place: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source_name)?;
        if let Some((line, column)) = self.location {
            write!(f, "line {line}, column {column}: ")?;
        }
        write!(f, "{}{}", self.place, self.message)
    }
}

impl std::error::Error for PolicyError {}

impl PolicyError {
    pub(crate) fn new(source_name: &str, place: &str, message: impl Into<String>) -> Self {
        Self::located(source_name, None, place, message)
    }

    /// An error at `location` (1-based line and column); `place` names the key
    /// (e.g. `[server] http`) and may be empty.
    pub fn located(
        source_name: &str,
        location: Option<(usize, usize)>,
        place: &str,
        message: impl Into<String>,
    ) -> Self {
        let place = if place.is_empty() {
            String::new()
        } else {
            format!("{place}: ")
        };
        PolicyError {
            source_name: source_name.to_owned(),
            location,
            place,
            message: cut(&message.into(), MAX_MESSAGE),
        }
    }
}

/// Every problem found in a policy (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// `text` cut to at most `max` characters (with `…` when cut), on one line.
pub fn cut(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The 1-based line and column (counted in characters) of byte `offset`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

/// `bytes` as text, or an error naming the line and byte offset of the first
/// byte that is not UTF-8.
pub fn utf8_text<'a>(bytes: &'a [u8], source: &str) -> Result<&'a str, PolicyError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = bytes[..at]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        PolicyError::new(
            source,
            "",
            format!(
                "the file is not UTF-8: line {line}, byte {} of the line (byte offset {at} in the file) is 0x{:02x}; save the file as UTF-8",
                at - line_start + 1,
                bytes[at]
            ),
        )
    })
}

/// The candidate closest to `word` by edit distance, when it is close enough
/// to be a typo (at most a third of the word's length, and at least 1), or
/// else the one `word` begins (`password` for `password_env`).
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            (word.len() >= 4)
                .then(|| candidates.iter().copied().find(|c| c.starts_with(word)))
                .flatten()
        })
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// One step of a key path: a key of a table, or an element of an array (named
/// by its `name` key when it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A key of a table.
    Key(String),
    /// An element of an array.
    Index {
        /// 0-based position.
        index: usize,
        /// The element's `name`, when it is a table with a string `name`.
        name: Option<String>,
    },
}

/// A key path as the user reads it: `trees[api].levels[user].limit` inside
/// `[[trees]]`; `[server] http`, `[notify.routes] errors`, `[store] cluster[1]`
/// in the other sections.
pub fn render_path(steps: &[Step]) -> String {
    let index = |out: &mut String, index: usize, name: &Option<String>| match name {
        Some(name) => out.push_str(&format!("[{}]", cut(name, MAX_ECHO))),
        None => out.push_str(&format!("[{index}]")),
    };
    let dotted = |out: &mut String, steps: &[Step]| {
        for step in steps {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() && !out.ends_with(' ') {
                        out.push('.');
                    }
                    out.push_str(&cut(k, MAX_ECHO));
                }
                Step::Index { index: i, name } => index(out, *i, name),
            }
        }
    };
    let mut out = String::new();
    match steps.first() {
        None => {}
        Some(Step::Key(k)) if k == "trees" => dotted(&mut out, steps),
        Some(_) => {
            let run = steps
                .iter()
                .take_while(|s| matches!(s, Step::Key(_)))
                .count();
            let header = run.saturating_sub(1).max(1).min(run);
            let names: Vec<String> = steps[..header]
                .iter()
                .filter_map(|s| match s {
                    Step::Key(k) => Some(cut(k, MAX_ECHO)),
                    Step::Index { .. } => None,
                })
                .collect();
            out.push_str(&format!("[{}]", names.join(".")));
            if header < steps.len() {
                out.push(' ');
                dotted(&mut out, &steps[header..]);
            }
        }
    }
    out
}

/// A TOML document parsed with the place of every key and value.
#[derive(Debug, Clone)]
pub struct TomlDocument<'a> {
    source: String,
    text: &'a str,
    root: Spanned<DeValue<'a>>,
}

impl<'a> TomlDocument<'a> {
    /// Parses `text`; a syntax error names its line and column and repeats at
    /// most a short piece of the line. Nesting deeper than the toml parser's
    /// limit is refused by it (no stack overflow) and reported the same way.
    pub fn parse(text: &'a str, source: &str) -> Result<Self, PolicyError> {
        let (root, errors) = DeTable::parse_recoverable(text);
        // Recovery goes on after the first error, but what it finds next is
        // mostly an echo of the first; the first reported is the one to fix.
        if let Some(first) = errors.first() {
            let location = first
                .span()
                .map(|s| line_col(text, s.start))
                .or_else(|| too_deep_line(first.message(), text));
            let line_text = location.and_then(|(line, _)| text.lines().nth(line - 1));
            let mut message = syntax_words(first.message(), line_text.unwrap_or(""));
            if let Some(line) = location.map(|(line, _)| line)
                && let Some(content) = text.lines().nth(line - 1)
            {
                message.push_str(&format!(
                    "; the line reads: {}",
                    cut(content.trim(), MAX_ECHO)
                ));
            }
            return Err(PolicyError::located(source, location, "", message));
        }
        let span = root.span();
        Ok(TomlDocument {
            source: source.to_owned(),
            text,
            root: Spanned::new(span, DeValue::Table(root.into_inner())),
        })
    }

    /// The file's name, as given to [`TomlDocument::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The top-level keys, with their line and column.
    pub fn top_level_keys(&self) -> Vec<(String, (usize, usize))> {
        self.table()
            .iter()
            .map(|(k, _)| (k.get_ref().to_string(), line_col(self.text, k.span().start)))
            .collect()
    }

    /// Whether the document has the top-level key `key`.
    pub fn has(&self, key: &str) -> bool {
        self.table().get(key).is_some()
    }

    fn table(&self) -> &DeTable<'a> {
        match self.root.get_ref() {
            DeValue::Table(t) => t,
            _ => unreachable!("a document is a table"),
        }
    }

    /// The line and column of the value at `path` (or, when it is absent, of
    /// the nearest table above it that is present).
    pub fn location_of(&self, path: &[Step]) -> Option<(usize, usize)> {
        let mut value = &self.root;
        let mut span = None;
        for step in path {
            let next = match (step, value.get_ref()) {
                (Step::Key(k), DeValue::Table(t)) => t.get(k.as_str()),
                (Step::Index { index, .. }, DeValue::Array(a)) => a.get(*index),
                _ => None,
            };
            match next {
                Some(next) => {
                    value = next;
                    span = Some(next.span());
                }
                None => break,
            }
        }
        span.map(|s| line_col(self.text, s.start))
    }

    /// The line and column of byte range `span`.
    pub fn location(&self, span: &Range<usize>) -> (usize, usize) {
        line_col(self.text, span.start)
    }

    /// Deserializes the top-level value `key` as `T`, reporting every key of
    /// the wrong type or unknown (not only the first): a key in error is
    /// reported and left out, and the rest is read again. Returns what was
    /// read (with the keys in error left out; `None` when the value as a whole
    /// could not be read) and the errors, each with the key's path.
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> (Option<T>, Vec<(Vec<Step>, PolicyError)>) {
        let mut errors = Vec::new();
        let Some(value) = self.table().get(key) else {
            return (None, errors);
        };
        let mut value = value.clone();
        let base = vec![Step::Key(key.to_owned())];
        let mut removed: Vec<Vec<Step>> = Vec::new();
        // Each round leaves out one key; a bound keeps a hostile file cheap.
        const MAX_ROUNDS: usize = 64;
        for _ in 0..MAX_ROUNDS {
            let e = match T::deserialize(value.clone().into_deserializer()) {
                Ok(t) => {
                    // In file order, whatever order the fields were read in.
                    errors.sort_by_key(|(_, e)| e.location);
                    return (Some(t), errors);
                }
                Err(e) => e,
            };
            let span = e.span().unwrap_or_else(|| value.span());
            let mut path = base.clone();
            locate(&value, span.start, &mut path);
            let missing_removed = e
                .message()
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
                .is_some_and(|field| {
                    removed
                        .iter()
                        .any(|r| r.last() == Some(&Step::Key(field.to_owned())))
                });
            if !missing_removed {
                let message = plain_words(e.message(), &path);
                errors.push((
                    path.clone(),
                    PolicyError::located(
                        &self.source,
                        Some(line_col(self.text, span.start)),
                        &render_path(&path),
                        message,
                    ),
                ));
            }
            if missing_removed
                || path.len() <= 1
                || !remove(&mut value, &path[1..])
                || removed.contains(&path)
            {
                return (None, errors);
            }
            removed.push(path);
        }
        errors.push((
            base.clone(),
            PolicyError::located(
                &self.source,
                None,
                &render_path(&base),
                format!("stopped after {MAX_ROUNDS} problems; fix these and check again"),
            ),
        ));
        (None, errors)
    }
}

/// Extends `path` (the steps to `value`) to the deepest key or element whose
/// key or value holds byte `pos`.
fn locate(value: &Spanned<DeValue<'_>>, pos: usize, path: &mut Vec<Step>) -> bool {
    let holds = |span: Range<usize>| {
        span.start <= pos && (pos < span.end || span.is_empty() && pos == span.start)
    };
    match value.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                path.push(Step::Key(k.get_ref().to_string()));
                if locate(v, pos, path) || holds(k.span()) || holds(v.span()) {
                    return true;
                }
                path.pop();
            }
            false
        }
        DeValue::Array(a) => {
            for (index, v) in a.iter().enumerate() {
                let name = v
                    .get_ref()
                    .as_table()
                    .and_then(|t| t.get("name"))
                    .and_then(|n| n.get_ref().as_str())
                    .map(str::to_owned);
                path.push(Step::Index { index, name });
                if locate(v, pos, path) || holds(v.span()) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// Removes the key at `path` (relative to `value`); false when the path does
/// not end in a key.
fn remove(value: &mut Spanned<DeValue<'_>>, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut value = value;
    for step in parents {
        let next = match (step, value.get_mut()) {
            (Step::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str()),
            (Step::Index { index, .. }, DeValue::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => value = next,
            None => return false,
        }
    }
    match (last, value.get_mut()) {
        (Step::Key(k), DeValue::Table(t)) => t.remove(k.as_str()).is_some(),
        _ => false,
    }
}

/// toml reports a dotted key or header too deep without a place: the first
/// line with more dots or brackets than the parser's limit is where it is.
fn too_deep_line(message: &str, text: &str) -> Option<(usize, usize)> {
    if !(message.contains("recurse") || message.contains("recursion")) {
        return None;
    }
    text.lines()
        .position(|line| {
            line.bytes()
                .filter(|b| matches!(b, b'.' | b'[' | b'{'))
                .count()
                > 80
        })
        .map(|i| (i + 1, 1))
}

/// A toml syntax error in plain words; `line` is the line it is on.
fn syntax_words(message: &str, line: &str) -> String {
    if message.contains("recurse") || message.contains("recursion") {
        return "values are nested too deeply (more than 80 levels of `[` or `{`); write nested tables as `[section.sub]` headers".to_owned();
    }
    if message.starts_with("duplicate key") {
        return if line.trim_start().starts_with('[') {
            "this table is defined twice; merge the two into one".to_owned()
        } else {
            "this key is given twice in its table; keep one".to_owned()
        };
    }
    if message.starts_with("string values must be quoted") {
        return "a value that is text must be in quotes (\"…\"); numbers, true, false and [lists] are not".to_owned();
    }
    if message.starts_with("invalid basic string") && message.ends_with("expected `\"`") {
        return "the string is not closed; end it with `\"` on the same line (use `\"\"\"` for several lines)".to_owned();
    }
    message
        .strip_suffix(", expected nothing")
        .unwrap_or(message)
        .to_owned()
}

/// serde's message for a wrong value, in words a non-Rust user reads, with the
/// fix when there is an obvious one. `path` is where the value is.
pub(crate) fn plain_words(message: &str, path: &[Step]) -> String {
    let key = path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index { .. } => None,
    });
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return wrong_type(found, expected, key, path);
    }
    if let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
        && let Some((field, expected)) = rest.split_once('`')
    {
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown key `{}`", cut(field, MAX_ECHO));
        if let Some(best) = closest(field, known.iter().copied()) {
            out.push_str(&format!("; did you mean `{best}`?"));
        } else if known.is_empty() {
            out.push_str("; this table takes no keys");
        } else {
            out.push_str(&format!("; known keys: {}", known.join(", ")));
        }
        return out;
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("`{field}` is missing; add `{field} = …` to this table");
    }
    if message.contains("recurse") || message.contains("recursion") {
        return syntax_words(message, "");
    }
    cut(message, MAX_MESSAGE)
}

fn wrong_type(found: &str, expected: &str, key: Option<&str>, path: &[Step]) -> String {
    let negative = found.starts_with("integer `-");
    let expected_words = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" if negative => {
            "a whole number, 0 or more".to_owned()
        }
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize"
        | "an integer" => "a whole number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a string" => "a string in quotes".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a table".to_owned(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table".to_owned(),
        e => e.to_owned(),
    };
    let (found_words, string_value) = if let Some(s) = found.strip_prefix("string ") {
        let inner = s.trim_matches('"');
        (format!("the string {}", cut(s, MAX_ECHO)), Some(inner))
    } else if let Some(n) = found
        .strip_prefix("integer `")
        .or_else(|| found.strip_prefix("floating point `"))
    {
        (
            format!("the number {}", cut(n.trim_end_matches('`'), MAX_ECHO)),
            None,
        )
    } else if let Some(b) = found.strip_prefix("boolean `") {
        (b.trim_end_matches('`').to_owned(), None)
    } else {
        let f = match found {
            "map" => "a table",
            "sequence" => "a list",
            other => other,
        };
        (f.to_owned(), None)
    };
    let key = key.unwrap_or("key");
    let number = found
        .strip_prefix("integer `")
        .map(|n| n.trim_end_matches('`'));
    let fix = match (expected_words.as_str(), string_value, number) {
        ("a whole number", Some(s), _) if s.trim().parse::<i64>().is_ok() => {
            format!("; remove the quotes: {key} = {}", s.trim())
        }
        ("true or false", Some(s @ ("true" | "false")), _) => {
            format!("; remove the quotes: {key} = {s}")
        }
        (e, _, Some(n)) if e.contains("duration") => format!("; write {key} = \"{n}s\""),
        ("a string in quotes", _, Some(n)) => format!("; put it in quotes: {key} = \"{n}\""),
        ("a list", Some(s), _) => format!("; write {key} = [\"{}\"]", cut(s, MAX_ECHO)),
        ("a list", _, _) if found == "map" => {
            let header: Vec<&str> = path
                .iter()
                .filter_map(|s| match s {
                    Step::Key(k) => Some(k.as_str()),
                    Step::Index { .. } => None,
                })
                .collect();
            format!(
                "; write each entry as its own `[[{}]]` table (double brackets)",
                header.join(".")
            )
        }
        _ => String::new(),
    };
    format!("expected {expected_words}, found {found_words}{fix}")
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::first_line("abc", 1, (1, 2))]
    #[case::second_line("a\nbc", 3, (2, 2))]
    #[case::characters("é\né=1", 5, (2, 2))]
    #[case::past_the_end("a", 9, (1, 2))]
    fn lines_and_columns(
        #[case] text: &str,
        #[case] offset: usize,
        #[case] expected: (usize, usize),
    ) {
        assert_eq!(line_col(text, offset), expected);
    }

    #[rstest]
    #[case::one_letter("limt", Some("limit"))]
    #[case::swapped("widnow", Some("window"))]
    #[case::far("colour", None)]
    #[case::prefix("wind", Some("window"))]
    fn suggestions(#[case] word: &str, #[case] expected: Option<&str>) {
        assert_eq!(closest(word, ["limit", "window", "name", "by"]), expected);
    }

    #[rstest]
    #[case::trees(vec![Step::Key("trees".into()), Step::Index { index: 0, name: Some("n".into()) }, Step::Key("levels".into()), Step::Index { index: 1, name: None }, Step::Key("limit".into())], "trees[n].levels[1].limit")]
    #[case::section(vec![Step::Key("server".into()), Step::Key("http".into())], "[server] http")]
    #[case::sub_table(vec![Step::Key("notify".into()), Step::Key("routes".into()), Step::Key("errors".into())], "[notify.routes] errors")]
    #[case::array(vec![Step::Key("store".into()), Step::Key("cluster".into()), Step::Index { index: 1, name: None }], "[store] cluster[1]")]
    #[case::whole_section(vec![Step::Key("server".into())], "[server]")]
    fn paths(#[case] steps: Vec<Step>, #[case] expected: &str) {
        assert_eq!(render_path(&steps), expected);
    }

    #[test]
    fn non_utf8_names_line_and_offset() {
        let e = utf8_text(b"a = 1\nb = \"\xff\"\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: the file is not UTF-8: line 2, byte 6 of the line (byte offset 11 in the file) is 0xff; save the file as UTF-8"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_echoing_the_line() {
        let deep = format!("x = {}1{}\n", "{a = ".repeat(200_000), "}".repeat(200_000));
        let e = TomlDocument::parse(&deep, "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml: line 1, column "), "{e}");
        assert!(e.contains("nested too deeply"), "{e}");
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[rstest]
    #[case::duplicate_key(
        "[s]\na = 1\na = 2\n",
        "line 3, column 1: this key is given twice in its table; keep one; the line reads: a = 2"
    )]
    #[case::duplicate_table("[s]\n[s]\n", "line 2, column 2: this table is defined twice")]
    #[case::unquoted(
        "kind = redis\n",
        "line 1, column 8: a value that is text must be in quotes"
    )]
    #[case::unclosed_string("a = \"x\n", "line 1, column 7: the string is not closed")]
    #[case::missing_comma(
        "a = [\"x\" \"y\"]\n",
        "line 1, column 10: missing comma between array elements"
    )]
    fn syntax_errors_in_words(#[case] text: &str, #[case] expected: &str) {
        let e = TomlDocument::parse(text, "c.toml").unwrap_err().to_string();
        assert!(e.starts_with(&format!("c.toml: {expected}")), "{e}");
    }

    #[test]
    fn a_deep_dotted_header_names_its_line() {
        let text = format!("a = 1\n[{}]\nx = 1\n", vec!["a"; 200_000].join("."));
        let e = TomlDocument::parse(&text, "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml: line 2, column 1: values are nested too deeply"),
            "{e}"
        );
        assert!(e.len() < 300, "{} bytes", e.len());
    }

    #[test]
    fn reading_stops_after_many_problems_and_says_so() {
        let keys: String = (0..100).map(|i| format!("k{i} = 1\n")).collect();
        let text = format!("[s]\n{keys}");
        let doc = TomlDocument::parse(&text, "c.toml").unwrap();
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct S {}
        let (value, errors) = doc.deserialize::<S>("s");
        assert!(value.is_none());
        assert_eq!(errors.len(), 65);
        assert!(
            errors[64]
                .1
                .to_string()
                .contains("stopped after 64 problems"),
            "{:?}",
            errors[64]
        );
    }

    #[test]
    fn long_values_are_cut() {
        let text = format!("[server]\nx = \"{}\"\n", "y".repeat(10_000));
        let doc = TomlDocument::parse(&text, "c.toml").unwrap();
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            x: Option<u64>,
        }
        let (_, errors) = doc.deserialize::<S>("server");
        let e = errors[0].1.to_string();
        assert!(e.starts_with("c.toml: line 2, column 5: [server] x: expected a whole number, found the string \"yyy"), "{e}");
        assert!(e.len() < 200, "{e}");
    }
}
