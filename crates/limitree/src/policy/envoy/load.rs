//! The node tree of one YAML file → a validated [`Domain`].
//!
//! Validation walks the whole document and collects every problem it can, each
//! with its line and column, its key path (`descriptors[0].rate_limit.unit`), what
//! was expected and how to fix it. A part that is wrong is skipped, so one
//! mistake does not hide the others, and nothing is built unless all is well.

use std::collections::{HashMap, HashSet};

use super::yaml::{self, Kind, Node as YNode, Pos};
use super::{Domain, KeyEntries, Level, Node, Pattern, Rule, RuleLimit, Unit};
use crate::policy::{
    Algorithm, LimitSpec, MAX_LIMIT, MAX_WINDOW, MIN_WINDOW, PolicyError, PolicyErrors,
    format_duration, parse_duration,
};

/// Longest user text quoted back in a message.
const QUOTE_MAX: usize = 80;

const ROOT_KEYS: &[&str] = &["domain", "descriptors"];
const DESCRIPTOR_KEYS: &[&str] = &[
    "key",
    "value",
    "rate_limit",
    "descriptors",
    "shadow_mode",
    "detailed_metric",
    "value_to_metric",
    "share_threshold",
    // Accepted (envoyproxy/ratelimit's own example uses it) but not returned to
    // Envoy yet: a warning says so. Its contents are free-form and not checked.
    "metadata",
];
const RATE_LIMIT_KEYS: &[&str] = &[
    "unit",
    "requests_per_unit",
    "unlimited",
    "name",
    "replaces",
    "window",
    "algorithm",
    "burst",
];
const REPLACES_KEYS: &[&str] = &["name"];
/// envoyproxy/ratelimit keys limitree does not implement: refused by name rather
/// than called unknown, so the message can say so.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[(
    "quota_mode",
    "there is no quota mode (its over-limit answers never deny; `shadow_mode: true` is the closest); \
     remove it",
)];

/// Quotes user text for a message, cut to [`QUOTE_MAX`] characters so one huge
/// line cannot flood a terminal or a log.
pub(super) fn shorten(text: &str) -> String {
    if text.chars().count() <= QUOTE_MAX {
        return text.to_owned();
    }
    let cut: String = text.chars().take(QUOTE_MAX).collect();
    format!("{cut}… ({} characters)", text.chars().count())
}

struct Loader<'a> {
    source: &'a str,
    errors: Vec<PolicyError>,
    warnings: Vec<String>,
    rules: Vec<Rule>,
    nodes: Vec<Node>,
    /// YAML `name` → line of its rule, for uniqueness.
    names: HashMap<String, usize>,
}

impl Loader<'_> {
    fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let place = if path.is_empty() {
            format!("line {}, column {}", pos.line, pos.col)
        } else {
            format!("line {}, column {}, `{path}`", pos.line, pos.col)
        };
        self.errors
            .push(PolicyError::new(self.source, &place, message));
    }

    /// The entries of a mapping, or an error saying a mapping was expected.
    /// Checks keys: each is a single value, known at this place, and given once.
    fn mapping<'n>(
        &mut self,
        node: &'n YNode,
        path: &str,
        what: &str,
        known: &[&str],
    ) -> Option<Vec<(&'n str, &'n YNode, Pos)>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                node.pos,
                path,
                format!(
                    "expected {what} (a mapping of `key: value` lines), found {}",
                    node.what()
                ),
            );
            return None;
        };
        let mut out: Vec<(&str, &YNode, Pos)> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (k, v) in entries {
            let Kind::Scalar { text: key, .. } = &k.kind else {
                self.error(
                    k.pos,
                    path,
                    format!("a key here is {}; keys must be plain names", k.what()),
                );
                continue;
            };
            let key_path = join(path, key);
            if let Some(line) = seen.get(key.as_str()) {
                self.error(
                    k.pos,
                    &key_path,
                    format!(
                        "`{}` is given twice (first on line {line}); keep one",
                        shorten(key)
                    ),
                );
                continue;
            }
            seen.insert(key, k.pos.line);
            if !known.contains(&key.as_str()) {
                let message = unknown_key(key, known);
                self.error(k.pos, &key_path, message);
                continue;
            }
            out.push((key.as_str(), v, k.pos));
        }
        Some(out)
    }

    fn text(&mut self, node: &YNode, path: &str) -> Option<String> {
        match &node.kind {
            _ if node.is_null() => None,
            Kind::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a single value (text), found {}", node.what()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &YNode, path: &str) -> bool {
        if let Kind::Scalar { text, plain: true } = &node.kind {
            // YAML 1.1 spellings too: envoyproxy/ratelimit reads its files with
            // Go's yaml.v2, which accepts them.
            match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => return true,
                "false" | "no" | "off" | "" | "~" | "null" => return false,
                _ => {}
            }
        }
        let found = match &node.kind {
            Kind::Scalar { text, .. } => format!("`{}`", shorten(text)),
            _ => node.what().to_owned(),
        };
        self.error(
            node.pos,
            path,
            format!("expected `true` or `false`, found {found}"),
        );
        false
    }

    /// A whole number in `0..=max` written as a plain scalar.
    fn number(&mut self, node: &YNode, path: &str, max: u64) -> Option<u64> {
        let found = match &node.kind {
            Kind::Scalar { text, plain: true } => {
                let digits = text.strip_prefix('+').unwrap_or(text);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    match digits.parse::<u64>() {
                        Ok(n) if n <= max => return Some(n),
                        _ => {
                            self.error(
                                node.pos,
                                path,
                                format!(
                                    "{} is too large; the largest allowed is {max}",
                                    shorten(text)
                                ),
                            );
                            return None;
                        }
                    }
                }
                format!("`{}`", shorten(text))
            }
            Kind::Scalar { text, plain: false } => {
                format!(
                    "the quoted text `{}` (write the number without quotes)",
                    shorten(text)
                )
            }
            _ => node.what().to_owned(),
        };
        self.error(
            node.pos,
            path,
            format!("expected a whole number from 0 to {max}, found {found}"),
        );
        None
    }

    fn root(&mut self, node: &YNode) -> Option<(String, Level)> {
        let entries = self.mapping(node, "", "the top of the file", ROOT_KEYS)?;
        let mut domain = None;
        let mut level = Level::default();
        for (key, value, _) in &entries {
            match *key {
                "domain" => domain = self.text(value, "domain").map(|d| (d, value.pos)),
                "descriptors" => {
                    level = self.descriptors(value, "descriptors", &[]);
                }
                _ => {}
            }
        }
        match domain {
            Some((name, _)) if !name.is_empty() => Some((name, level)),
            Some((_, pos)) => {
                self.error(
                    pos,
                    "domain",
                    "the domain is empty; name it, e.g. `domain: edge_proxy`",
                );
                None
            }
            None => {
                self.error(
                    node.pos,
                    "",
                    "`domain` is missing; add e.g. `domain: edge_proxy` at the top of the file \
                     (the name Envoy's rate limit filter sends)",
                );
                None
            }
        }
    }

    /// One `descriptors` list. `trail` is the descriptor path of the parent node.
    fn descriptors(&mut self, node: &YNode, path: &str, trail: &[String]) -> Level {
        let mut level = Level::default();
        if node.is_null() {
            return level;
        }
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos,
                path,
                format!(
                    "expected a list of descriptors (lines starting with `- key: …`), found {}",
                    node.what()
                ),
            );
            return level;
        };
        // (key, value) → line of its first descriptor at this level.
        let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(entries) = self.mapping(item, &item_path, "a descriptor", DESCRIPTOR_KEYS)
            else {
                continue;
            };
            let get = |name: &str| {
                entries
                    .iter()
                    .find(|(k, _, _)| *k == name)
                    .map(|(_, v, _)| *v)
            };
            let key = match get("key") {
                Some(v) => self.text(v, &join(&item_path, "key")),
                None => None,
            };
            let key = match key {
                Some(k) if !k.is_empty() => Some(k),
                Some(_) | None => {
                    let pos = get("key").map_or(item.pos, |v| v.pos);
                    self.error(
                        pos,
                        &join(&item_path, "key"),
                        "every descriptor needs a non-empty `key`, e.g. `- key: remote_address`",
                    );
                    None
                }
            };
            // An empty value is no value, as in envoyproxy/ratelimit.
            let value = get("value")
                .and_then(|v| self.text(v, &join(&item_path, "value")))
                .filter(|v| !v.is_empty());
            let flag = |this: &mut Self, name: &str| {
                get(name).is_some_and(|v| this.boolean(v, &join(&item_path, name)))
            };
            if let Some((_, _, pos)) = entries.iter().find(|(k, _, _)| *k == "metadata") {
                self.warnings.push(format!(
                    "{}: line {}: `{}`: descriptor metadata is accepted but not returned to Envoy by limitree",
                    self.source,
                    pos.line,
                    join(&item_path, "metadata")
                ));
            }
            let shadow = flag(self, "shadow_mode");
            let detailed_metric = flag(self, "detailed_metric");
            let value_to_metric = flag(self, "value_to_metric");
            let share_threshold = flag(self, "share_threshold");
            let is_wildcard = value.as_deref().is_some_and(|v| v.contains('*'));
            if share_threshold && !is_wildcard {
                let pos = get("share_threshold").map_or(item.pos, |v| v.pos);
                self.error(
                    pos,
                    &join(&item_path, "share_threshold"),
                    "`share_threshold` only applies to a wildcard `value` (one containing `*`); remove it",
                );
            }
            let Some(key) = key else { continue };

            let mut here = trail.to_vec();
            here.push(match &value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            });
            let ident = (key.clone(), value.clone());
            if let Some(line) = seen.get(&ident) {
                let what = match &value {
                    Some(v) => format!("`key: {}` with `value: {}`", shorten(&key), shorten(v)),
                    None => format!("`key: {}` without a value", shorten(&key)),
                };
                self.error(
                    item.pos,
                    &item_path,
                    format!(
                        "{what} is already defined at this level (line {line}); \
                         merge the two descriptors into one"
                    ),
                );
                continue;
            }
            seen.insert(ident, item.pos.line);

            let rule = match get("rate_limit") {
                Some(v) if !v.is_null() => self.rule(
                    v,
                    &join(&item_path, "rate_limit"),
                    &here,
                    shadow,
                    detailed_metric,
                    value_to_metric,
                ),
                _ => None,
            };
            let children = match get("descriptors") {
                Some(v) => self.descriptors(v, &join(&item_path, "descriptors"), &here),
                None => Level::default(),
            };
            let id = self.nodes.len();
            self.nodes.push(Node {
                rule,
                children,
                shared_pattern: (share_threshold && is_wildcard)
                    .then(|| value.clone())
                    .flatten(),
            });
            let slot: &mut KeyEntries = level.by_key.entry(key).or_default();
            match value {
                None => slot.key_only = Some(id),
                Some(v) if v.contains('*') => slot.wildcards.push((Pattern::new(&v), id)),
                Some(v) => {
                    slot.exact.insert(v, id);
                }
            }
        }
        level
    }

    /// A `rate_limit` block → the index of its new rule.
    fn rule(
        &mut self,
        node: &YNode,
        path: &str,
        trail: &[String],
        shadow: bool,
        detailed_metric: bool,
        value_to_metric: bool,
    ) -> Option<usize> {
        let before = self.errors.len();
        let entries = self.mapping(node, path, "a `rate_limit` block", RATE_LIMIT_KEYS)?;
        let get = |name: &str| {
            entries
                .iter()
                .find(|(k, _, _)| *k == name)
                .map(|(_, v, _)| *v)
        };
        let at = |name: &str| join(path, name);

        let unlimited = get("unlimited").is_some_and(|v| self.boolean(v, &at("unlimited")));
        let yaml_name = get("name")
            .and_then(|v| self.text(v, &at("name")))
            .filter(|n| !n.is_empty());
        let mut replaces = Vec::new();
        if let Some(list) = get("replaces").filter(|v| !v.is_null()) {
            if let Kind::Seq(items) = &list.kind {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{}[{i}]", at("replaces"));
                    let Some(fields) =
                        self.mapping(item, &item_path, "a `- name: …` entry", REPLACES_KEYS)
                    else {
                        continue;
                    };
                    let name = fields
                        .iter()
                        .find(|(k, _, _)| *k == "name")
                        .and_then(|(_, v, _)| self.text(v, &join(&item_path, "name")))
                        .unwrap_or_default();
                    if name.is_empty() {
                        self.error(
                            item.pos,
                            &item_path,
                            "a `replaces` entry needs the `name` of the rule it replaces, e.g. `- name: specific_limit`",
                        );
                    } else if yaml_name.as_deref() == Some(name.as_str()) {
                        self.error(
                            item.pos,
                            &join(&item_path, "name"),
                            format!(
                                "a rule cannot replace itself (`{}` is this rule's own name)",
                                shorten(&name)
                            ),
                        );
                    } else {
                        replaces.push(name);
                    }
                }
            } else {
                self.error(
                    list.pos,
                    &at("replaces"),
                    format!(
                        "expected a list of `- name: …` entries, found {}",
                        list.what()
                    ),
                );
            }
        }

        let unit_node = get("unit").filter(|v| !v.is_null());
        let window_node = get("window").filter(|v| !v.is_null());
        let rpu_node = get("requests_per_unit").filter(|v| !v.is_null());
        let algorithm_node = get("algorithm").filter(|v| !v.is_null());
        let burst_node = get("burst").filter(|v| !v.is_null());

        let (limit, unit, requests_per_unit) = if unlimited {
            // envoyproxy/ratelimit refuses a unit on an unlimited rule; the
            // extensions make no sense there either.
            for (name, n) in [
                ("unit", unit_node),
                ("window", window_node),
                ("algorithm", algorithm_node),
                ("burst", burst_node),
            ] {
                if let Some(n) = n {
                    self.error(
                        n.pos,
                        &at(name),
                        format!("an `unlimited: true` rule counts nothing, so `{name}` has no meaning; remove it"),
                    );
                }
            }
            (Some(RuleLimit::Unlimited), None, 0)
        } else {
            let window = match (unit_node, window_node) {
                (Some(u), Some(_)) => {
                    self.error(
                        u.pos,
                        path,
                        "give either `unit` or limitree's `window`, not both (the window replaces the unit)",
                    );
                    None
                }
                (Some(u), None) => self.unit(u, &at("unit")).map(|u| (u.micros(), Some(u))),
                (None, Some(w)) => self.window(w, &at("window")).map(|w| (w, Unit::exactly(w))),
                (None, None) => {
                    self.error(
                        node.pos,
                        path,
                        "`unit` is missing; add one of `second`, `minute`, `hour`, `day`, `week`, `month` (30 days), \
                         `year` (365 days) — or limitree's `window`, e.g. `window: 30m` — or write `unlimited: true`",
                    );
                    None
                }
            };
            let rpu = match rpu_node {
                Some(n) => self.number(n, &at("requests_per_unit"), MAX_LIMIT),
                None => {
                    self.error(
                        node.pos,
                        path,
                        "`requests_per_unit` is missing; say how many requests each unit admits \
                         (0 blocks every request)",
                    );
                    None
                }
            };
            let algorithm = match algorithm_node {
                None => Algorithm::FixedWindow,
                Some(n) => {
                    let name = self.text(n, &at("algorithm")).unwrap_or_default();
                    Algorithm::from_name(&name).unwrap_or_else(|| {
                        self.error(
                            n.pos,
                            &at("algorithm"),
                            format!(
                                "algorithm `{}` is unknown; use one of `fixed_window` (the default, as \
                                 envoyproxy/ratelimit counts), `sliding_window`, `sliding_log`, `gcra`",
                                shorten(&name)
                            ),
                        );
                        Algorithm::FixedWindow
                    })
                }
            };
            let burst = match burst_node {
                None => None,
                Some(n) if algorithm != Algorithm::Gcra => {
                    self.error(
                        n.pos,
                        &at("burst"),
                        format!("`burst` applies only to `algorithm: gcra`, not `{algorithm}`; remove it or switch the algorithm"),
                    );
                    None
                }
                Some(n) => match self.number(n, &at("burst"), MAX_LIMIT) {
                    Some(0) => {
                        self.error(n.pos, &at("burst"), "`burst` is 0; it must be at least 1");
                        None
                    }
                    other => other,
                },
            };
            match (window, rpu) {
                (Some((window, unit)), Some(0)) => (Some(RuleLimit::Blocked { window }), unit, 0),
                (Some((window, unit)), Some(limit)) => {
                    let spec = LimitSpec::new(algorithm, limit, window, burst.unwrap_or(limit));
                    self.check_spec(&spec, node.pos, path);
                    (Some(RuleLimit::Limited(spec)), unit, limit)
                }
                _ => (None, None, 0),
            }
        };

        let rule_path = trail.join(".");
        if let Some(n) = &yaml_name {
            if let Some(line) = self.names.get(n) {
                let pos = get("name").map_or(node.pos, |v| v.pos);
                self.error(
                    pos,
                    &at("name"),
                    format!(
                        "rule name `{}` is already used on line {line}; names must be unique in a domain \
                         (they say which rule fired, and what `replaces` refers to)",
                        shorten(n)
                    ),
                );
            } else {
                self.names.insert(n.clone(), node.pos.line);
            }
        }
        let limit = limit?;
        if self.errors.len() != before {
            return None;
        }
        self.rules.push(Rule {
            name: yaml_name.clone().unwrap_or_else(|| rule_path.clone()),
            path: rule_path,
            yaml_name,
            limit,
            unit,
            requests_per_unit,
            shadow,
            detailed_metric,
            value_to_metric,
            replaces,
            line: node.pos.line,
        });
        Some(self.rules.len() - 1)
    }

    fn unit(&mut self, node: &YNode, path: &str) -> Option<Unit> {
        let text = self.text(node, path)?;
        if let Some(unit) = Unit::from_name(&text) {
            return Some(unit);
        }
        let names: Vec<&str> = Unit::ALL.iter().map(|u| u.as_str()).collect();
        let hint = match closest(&text.to_ascii_lowercase(), &names) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        self.error(
            node.pos,
            path,
            format!(
                "unit `{}` is unknown; {hint}use one of `second`, `minute`, `hour`, `day`, `week`, \
                 `month` (30 days), `year` (365 days), or limitree's `window` for any other length (e.g. `window: 30m`)",
                shorten(&text)
            ),
        );
        None
    }

    fn window(&mut self, node: &YNode, path: &str) -> Option<u64> {
        let text = self.text(node, path)?;
        let us = match parse_duration(&text) {
            Ok(us) => us,
            Err(_) if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() => {
                self.error(
                    node.pos,
                    path,
                    format!("window `{text}` has no unit; write `{text}s` or `{text}ms`"),
                );
                return None;
            }
            Err(e) => {
                self.error(node.pos, path, format!("window {}", shorten(&e)));
                return None;
            }
        };
        if us < MIN_WINDOW {
            self.error(
                node.pos,
                path,
                "the window is shorter than 1ms; windows are at least `1ms`",
            );
            return None;
        }
        if us > MAX_WINDOW {
            self.error(
                node.pos,
                path,
                "the window is longer than `366d`, the longest allowed",
            );
            return None;
        }
        Some(us)
    }

    /// The exactness bounds every store relies on (as the TOML policy checks them).
    fn check_spec(&mut self, spec: &LimitSpec, pos: Pos, path: &str) {
        const EXACT: u128 = 1 << 53;
        match spec.algorithm {
            Algorithm::SlidingWindow
                if u128::from(spec.limit) * u128::from(spec.window) >= EXACT =>
            {
                self.error(
                    pos,
                    path,
                    format!(
                        "sliding_window with {} requests per {} exceeds the exact range \
                         (requests × window in µs < 2^53); shorten the window or use gcra",
                        spec.limit,
                        format_duration(spec.window)
                    ),
                );
            }
            Algorithm::Gcra
                if u128::from(spec.burst) * u128::from(spec.emission_interval()) >= EXACT =>
            {
                self.error(
                    pos,
                    path,
                    "gcra burst × (window / requests_per_unit) is too large (must stay below 2^53 µs)",
                );
            }
            _ => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The message for a key not known at its place, with the likeliest fix.
fn unknown_key(key: &str, known: &[&str]) -> String {
    if let Some((_, why)) = UNSUPPORTED_KEYS.iter().find(|(k, _)| *k == key) {
        return format!(
            "`{key}` is an envoyproxy/ratelimit setting limitree does not support: {why}"
        );
    }
    let quoted = shorten(key);
    let elsewhere = [
        ("the top of the file", ROOT_KEYS),
        ("a descriptor", DESCRIPTOR_KEYS),
        ("a `rate_limit` block", RATE_LIMIT_KEYS),
    ]
    .into_iter()
    .find(|(_, keys)| keys.contains(&key) && *keys != known);
    if let Some((place, _)) = elsewhere {
        return format!(
            "`{quoted}` does not belong here; it is a key of {place} — check the indentation"
        );
    }
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(key, known) {
        Some(near) => {
            format!("unknown key `{quoted}`; did you mean `{near}`? (known here: {list})")
        }
        None => format!("unknown key `{quoted}`; the keys known here are {list}"),
    }
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be
/// a likely typo.
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    if word.chars().count() > 64 {
        return None;
    }
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

pub(super) fn load(text: &str, source: &str) -> Result<Domain, PolicyErrors> {
    let mut loader = Loader {
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
        rules: Vec::new(),
        nodes: Vec::new(),
        names: HashMap::new(),
    };
    let root = match yaml::read(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(PolicyErrors(vec![PolicyError::new(
                source,
                "",
                "the file holds no YAML document; it needs at least `domain: <name>` and `descriptors:`",
            )]));
        }
        Err(e) => {
            let place = e
                .pos
                .map(|p| format!("line {}, column {}", p.line, p.col))
                .unwrap_or_default();
            return Err(PolicyErrors(vec![PolicyError::new(
                source,
                &place,
                shorten_message(&e.message),
            )]));
        }
    };
    let parsed = loader.root(&root);
    let known: HashSet<&str> = loader
        .rules
        .iter()
        .filter_map(|r| r.yaml_name.as_deref())
        .collect();
    let mut warnings = std::mem::take(&mut loader.warnings);
    for rule in &loader.rules {
        for name in &rule.replaces {
            if !known.contains(name.as_str()) {
                warnings.push(format!(
                    "{source}: line {}: rule `{}` replaces `{}`, but no rule has that name; it replaces nothing",
                    rule.line,
                    shorten(&rule.name),
                    shorten(name)
                ));
            }
        }
    }
    // `Rule::name` is unique: YAML names are checked as they are read, but a
    // YAML name may equal another rule's path, and paths may coincide when
    // values hold `.` or `=` (`a=b.c` is one level or two).
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut clashes = Vec::new();
    for rule in &loader.rules {
        if let Some(line) = by_name.insert(&rule.name, rule.line) {
            clashes.push((rule.line, rule.name.clone(), line));
        }
    }
    for (line, name, first) in clashes {
        loader.errors.push(PolicyError::new(
            source,
            &format!("line {line}"),
            format!(
                "this rule would be called `{}`, like the rule on line {first}; give one of them \
                 a distinct `name:` in its `rate_limit`",
                shorten(&name)
            ),
        ));
    }
    match parsed {
        Some((name, root)) if loader.errors.is_empty() => Ok(Domain {
            name,
            rules: loader.rules,
            warnings,
            source: source.to_owned(),
            root,
            nodes: loader.nodes,
        }),
        _ => Err(PolicyErrors(loader.errors)),
    }
}

/// Parser messages can quote the input; keep them to a readable length.
fn shorten_message(message: &str) -> String {
    if message.chars().count() <= 4 * QUOTE_MAX {
        message.to_owned()
    } else {
        let cut: String = message.chars().take(4 * QUOTE_MAX).collect();
        format!("{cut}…")
    }
}
