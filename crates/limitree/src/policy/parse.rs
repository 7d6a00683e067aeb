//! TOML → [`Policy`], with every problem reported with its place and its fix.
//!
//! Parsing happens in two steps: serde reads the document into loose "raw"
//! structs (numbers as `i64`, durations and algorithms as strings) so that a wrong
//! value reaches validation, where the error can name the tree, the level and the
//! field; then [`validate`] builds the typed model.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{
    Algorithm, DEFAULT_MAX_BUCKETS, Level, LimitSpec, MAX_BY_KEYS, MAX_LEVELS, MAX_LIMIT,
    MAX_WINDOW, MIN_WINDOW, Override, Policy, PolicyError, PolicyErrors, SLIDING_LOG_WARN_LIMIT,
    Selection, Tree, format_duration, parse_duration,
};

/// The part of a config document the library owns.
#[derive(Debug, Deserialize)]
struct RawDocument {
    #[serde(default)]
    trees: Vec<RawTree>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTree {
    name: String,
    #[serde(default)]
    levels: Vec<RawLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    name: String,
    #[serde(default)]
    by: Vec<String>,
    limit: Option<i64>,
    window: Option<toml::Value>,
    algorithm: Option<String>,
    burst: Option<i64>,
    #[serde(default)]
    shadow: bool,
    required: Option<bool>,
    max_buckets: Option<i64>,
    #[serde(default)]
    overrides: Vec<RawOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    when: BTreeMap<String, String>,
    limit: Option<i64>,
    window: Option<toml::Value>,
    burst: Option<i64>,
}

pub(super) fn parse_document(text: &str, source: &str) -> Result<Policy, PolicyErrors> {
    let raw: RawDocument = toml::from_str(text).map_err(|e| toml_error(source, &e))?;
    validate(raw.trees, source)
}

pub(super) fn parse_trees_value(trees: toml::Value, source: &str) -> Result<Policy, PolicyErrors> {
    let raw: Vec<RawTree> = trees.try_into().map_err(|e| toml_error(source, &e))?;
    validate(raw, source)
}

fn toml_error(source: &str, e: &toml::de::Error) -> PolicyErrors {
    PolicyErrors(vec![PolicyError::new(source, "", e.to_string().trim_end())])
}

/// Collects errors for one document.
struct Problems<'a> {
    source: &'a str,
    errors: Vec<PolicyError>,
}

impl Problems<'_> {
    fn push(&mut self, place: &str, message: impl Into<String>) {
        self.errors
            .push(PolicyError::new(self.source, place, message));
    }
}

fn validate(raw_trees: Vec<RawTree>, source: &str) -> Result<Policy, PolicyErrors> {
    let mut problems = Problems {
        source,
        errors: Vec::new(),
    };
    let mut warnings = Vec::new();
    if raw_trees.is_empty() {
        problems.push(
            "",
            "no trees defined; add at least one `[[trees]]` table with `name` and `[[trees.levels]]`",
        );
    }
    let mut tree_names = HashSet::new();
    let mut trees = Vec::with_capacity(raw_trees.len());
    for (index, raw) in raw_trees.into_iter().enumerate() {
        let place = format!("tree `{}`", raw.name);
        if !valid_name(&raw.name) {
            problems.push(
                &format!("tree #{}", index + 1),
                format!(
                    "name `{}` is not allowed; use 1-64 letters, digits, `_`, `-` or `.`",
                    raw.name
                ),
            );
        }
        if !tree_names.insert(raw.name.clone()) {
            problems.push(&place, "defined twice; tree names must be unique");
        }
        if raw.levels.is_empty() {
            problems.push(
                &place,
                "has no levels; add `[[trees.levels]]` tables, root (global) first",
            );
        }
        if raw.levels.len() > MAX_LEVELS {
            problems.push(
                &place,
                format!(
                    "has {} levels; at most {MAX_LEVELS} are allowed",
                    raw.levels.len()
                ),
            );
        }
        let mut level_names = HashSet::new();
        let mut levels = Vec::with_capacity(raw.levels.len());
        for raw_level in raw.levels {
            let level_place = format!("{place}, level `{}`", raw_level.name);
            if !level_names.insert(raw_level.name.clone()) {
                problems.push(
                    &level_place,
                    "defined twice; level names must be unique in a tree",
                );
            }
            if let Some(level) = validate_level(raw_level, &level_place, &mut problems) {
                if level.spec.algorithm == Algorithm::SlidingLog
                    && level.spec.limit > SLIDING_LOG_WARN_LIMIT
                {
                    warnings.push(format!(
                        "{source}: {level_place}: sliding_log keeps one entry per admitted unit \
                         (up to {} per bucket); for large limits prefer sliding_window or gcra (O(1) state)",
                        level.spec.limit
                    ));
                }
                levels.push(level);
            }
        }
        trees.push(Tree {
            name: raw.name,
            levels,
            index,
            selection: Selection::Native,
        });
    }
    if problems.errors.is_empty() {
        Ok(Policy::from_parts(trees, warnings))
    } else {
        Err(PolicyErrors(problems.errors))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn validate_level(raw: RawLevel, place: &str, problems: &mut Problems<'_>) -> Option<Level> {
    let before = problems.errors.len();
    if !valid_name(&raw.name) {
        problems.push(
            place,
            "the name is not allowed; use 1-64 letters, digits, `_`, `-` or `.`",
        );
    }
    let algorithm = match raw.algorithm.as_deref() {
        None => Algorithm::SlidingLog,
        Some(name) => Algorithm::from_name(name).unwrap_or_else(|| {
            problems.push(
                place,
                format!(
                    "algorithm `{name}` is unknown; use one of `sliding_log`, `sliding_window`, `gcra`, `fixed_window`"
                ),
            );
            Algorithm::SlidingLog
        }),
    };
    let limit = match raw.limit {
        None => {
            problems.push(
                place,
                "`limit` is missing; set how many units a window admits, e.g. `limit = 10`",
            );
            None
        }
        Some(n) => positive(n, "limit", place, problems),
    };
    let window = match &raw.window {
        None => {
            problems.push(
                place,
                "`window` is missing; set it, e.g. `window = \"30m\"`",
            );
            None
        }
        Some(v) => window_value(v, place, problems),
    };
    if raw.burst.is_some() && algorithm != Algorithm::Gcra {
        problems.push(
            place,
            format!("`burst` applies only to `algorithm = \"gcra\"`, not `{algorithm}`; remove it or switch the algorithm"),
        );
    }
    let burst = raw
        .burst
        .and_then(|b| positive(b, "burst", place, problems));

    let mut by_seen = HashSet::new();
    for key in &raw.by {
        if key.is_empty() || key.len() > 256 {
            problems.push(place, "a `by` key is empty or longer than 256 bytes");
        }
        if !by_seen.insert(key) {
            problems.push(place, format!("`by` names `{key}` twice"));
        }
    }
    if raw.by.len() > MAX_BY_KEYS {
        problems.push(
            place,
            format!(
                "`by` has {} keys; at most {MAX_BY_KEYS} are allowed",
                raw.by.len()
            ),
        );
    }
    let required = raw.required.unwrap_or(true);
    if raw.by.is_empty() && !required {
        problems.push(
            place,
            "`required = false` needs `by` keys: a level without `by` applies to every request",
        );
    }
    if raw.by.is_empty() && raw.max_buckets.is_some() {
        problems.push(
            place,
            "`max_buckets` needs `by` keys: a level without `by` has one bucket",
        );
    }
    if raw.by.is_empty() && !raw.overrides.is_empty() {
        problems.push(place, "`overrides` need `by` keys to match on");
    }
    let max_buckets = match raw.max_buckets {
        None => DEFAULT_MAX_BUCKETS,
        Some(n) => positive(n, "max_buckets", place, problems).map_or(DEFAULT_MAX_BUCKETS, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
    };

    let (limit, window) = (limit?, window?);
    let spec = LimitSpec {
        algorithm,
        limit,
        window,
        burst: burst.unwrap_or(limit),
    };
    check_spec(&spec, place, problems);

    let mut overrides: Vec<Override> = Vec::new();
    for (i, raw_override) in raw.overrides.into_iter().enumerate() {
        let oplace = format!("{place}, override #{}", i + 1);
        if let Some(o) = validate_override(raw_override, &raw.by, &spec, &oplace, problems) {
            if overrides.iter().any(|other| other.values == o.values) {
                problems.push(&oplace, "matches the same values as an earlier override");
            }
            overrides.push(o);
        }
    }

    (problems.errors.len() == before).then_some(Level {
        name: raw.name,
        by: raw.by,
        spec,
        overrides,
        shadow: raw.shadow,
        required,
        max_buckets,
    })
}

fn validate_override(
    raw: RawOverride,
    by: &[String],
    base: &LimitSpec,
    place: &str,
    problems: &mut Problems<'_>,
) -> Option<Override> {
    let mut values = Vec::with_capacity(by.len());
    for key in by {
        match raw.when.get(key) {
            Some(v) => values.push(v.clone()),
            None => problems.push(
                place,
                format!("`when` must give a value for `{key}` (the level's `by` keys)"),
            ),
        }
    }
    for key in raw.when.keys() {
        if !by.contains(key) {
            problems.push(
                place,
                format!("`when` names `{key}`, which is not one of the level's `by` keys"),
            );
        }
    }
    if raw.burst.is_some() && base.algorithm != Algorithm::Gcra {
        problems.push(place, "`burst` applies only to gcra levels");
    }
    let limit = match raw.limit {
        Some(n) => positive(n, "limit", place, problems)?,
        None => base.limit,
    };
    let window = match &raw.window {
        Some(v) => window_value(v, place, problems)?,
        None => base.window,
    };
    let burst = match raw.burst {
        Some(b) => positive(b, "burst", place, problems)?,
        // An override that changes the limit of a level without an explicit burst
        // keeps burst == limit, as the level itself would.
        None if base.burst == base.limit => limit,
        None => base.burst,
    };
    let spec = LimitSpec {
        algorithm: base.algorithm,
        limit,
        window,
        burst,
    };
    check_spec(&spec, place, problems);
    (values.len() == by.len()).then_some(Override { values, spec })
}

fn positive(n: i64, field: &str, place: &str, problems: &mut Problems<'_>) -> Option<u64> {
    if n <= 0 {
        let hint = if field == "limit" {
            " (a level that admits nothing is not a limit; to block traffic, do it before the limiter)"
        } else {
            ""
        };
        problems.push(
            place,
            format!("`{field}` is {n}; it must be at least 1{hint}"),
        );
        return None;
    }
    let n = n.unsigned_abs();
    if n > MAX_LIMIT {
        problems.push(
            place,
            format!("`{field}` is {n}; the largest allowed is {MAX_LIMIT}"),
        );
        return None;
    }
    Some(n)
}

fn window_value(value: &toml::Value, place: &str, problems: &mut Problems<'_>) -> Option<u64> {
    let text = match value {
        toml::Value::String(s) => s.as_str(),
        toml::Value::Integer(n) => {
            problems.push(
                place,
                format!("window `{n}` has no unit; write `\"{n}s\"` or `\"{n}ms\"`"),
            );
            return None;
        }
        other => {
            problems.push(
                place,
                format!("window `{other}` is not a duration; write e.g. `\"30m\"`"),
            );
            return None;
        }
    };
    let us = match parse_duration(text) {
        Ok(us) => us,
        Err(e) => {
            problems.push(place, format!("window {e}"));
            return None;
        }
    };
    if us < MIN_WINDOW {
        problems.push(
            place,
            format!("window `{text}` is shorter than 1ms; windows are at least `1ms`"),
        );
        return None;
    }
    if us > MAX_WINDOW {
        problems.push(
            place,
            format!("window `{text}` is longer than a year (`366d`), the longest allowed"),
        );
        return None;
    }
    Some(us)
}

/// Rules that bind the numbers together.
fn check_spec(spec: &LimitSpec, place: &str, problems: &mut Problems<'_>) {
    // Every store must decide identically; the Redis store computes in Lua numbers
    // (doubles, exact to 2^53), so the algorithms' products must stay below that.
    const EXACT: u128 = 1 << 53;
    match spec.algorithm {
        Algorithm::SlidingWindow => {
            if u128::from(spec.limit) * u128::from(spec.window) >= EXACT {
                problems.push(
                    place,
                    format!(
                        "sliding_window with limit {} over {} exceeds the exact range (limit × window in µs < 2^53); shorten the window or use gcra",
                        spec.limit,
                        format_duration(spec.window)
                    ),
                );
            }
        }
        Algorithm::Gcra => {
            if u128::from(spec.burst) * u128::from(spec.emission_interval()) >= EXACT {
                problems.push(
                    place,
                    "gcra burst × (window / limit) is too large (must stay below 2^53 µs)",
                );
            }
        }
        Algorithm::SlidingLog | Algorithm::FixedWindow => {}
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn level(body: &str) -> String {
        format!("[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"l\"\n{body}\n")
    }

    #[test]
    fn default_policy_is_valid() {
        let p = Policy::default_notifications();
        let tree = p.tree("notifications").unwrap();
        assert_eq!(tree.levels.len(), 2);
        assert_eq!(tree.levels[0].spec.limit, 100);
        assert_eq!(tree.levels[1].by, vec!["category".to_owned()]);
        assert_eq!(tree.levels[1].spec.window, 1_800_000_000);
    }

    #[rstest]
    #[case::zero_limit("limit = 0\nwindow = \"1s\"", "`limit` is 0; it must be at least 1")]
    #[case::negative_limit("limit = -3\nwindow = \"1s\"", "`limit` is -3")]
    #[case::huge_limit("limit = 2000000000\nwindow = \"1s\"", "the largest allowed")]
    #[case::missing_limit("window = \"1s\"", "`limit` is missing")]
    #[case::missing_window("limit = 1", "`window` is missing")]
    #[case::word_window(
        "limit = 1\nwindow = \"30 minutes\"",
        "tree `t`, level `l`: window `30 minutes` is not a duration; write `30m`"
    )]
    #[case::unitless_window("limit = 1\nwindow = 30", "has no unit")]
    #[case::zero_window("limit = 1\nwindow = \"0s\"", "shorter than 1ms")]
    #[case::long_window("limit = 1\nwindow = \"400d\"", "longer than a year")]
    #[case::burst_on_log(
        "limit = 1\nwindow = \"1s\"\nburst = 3",
        "`burst` applies only to `algorithm = \"gcra\"`"
    )]
    #[case::unknown_algorithm(
        "limit = 1\nwindow = \"1s\"\nalgorithm = \"leaky\"",
        "algorithm `leaky` is unknown"
    )]
    #[case::optional_global(
        "limit = 1\nwindow = \"1s\"\nrequired = false",
        "`required = false` needs `by` keys"
    )]
    #[case::duplicate_by(
        "limit = 1\nwindow = \"1s\"\nby = [\"a\", \"a\"]",
        "`by` names `a` twice"
    )]
    #[case::unknown_field("limit = 1\nwindow = \"1s\"\nlimt = 3", "unknown field `limt`")]
    #[case::override_wrong_key(
        "limit = 1\nwindow = \"1s\"\nby = [\"a\"]\noverrides = [{ when = { b = \"x\" }, limit = 2 }]",
        "`when` must give a value for `a`"
    )]
    #[case::sliding_window_too_big(
        "limit = 1000000000\nwindow = \"30d\"\nalgorithm = \"sliding_window\"",
        "exact range"
    )]
    fn rejects(#[case] body: &str, #[case] expected: &str) {
        let err = Policy::from_toml_str(&level(body), "limits.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
        assert!(text.starts_with("limits.toml: "), "{text}");
    }

    #[test]
    fn rejects_duplicate_level_names_and_reports_all_problems() {
        let text = r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "a"
limit = 1
window = "1s"
[[trees.levels]]
name = "a"
limit = 0
window = "1s"
"#;
        let err = Policy::from_toml_str(text, "f.toml").unwrap_err();
        assert_eq!(err.errors().len(), 2, "{err}");
        assert!(
            err.to_string()
                .contains("tree `t`, level `a`: defined twice")
        );
    }

    #[test]
    fn rejects_duplicate_trees_and_empty_documents() {
        let one =
            "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"a\"\nlimit = 1\nwindow = \"1s\"\n";
        let err = Policy::from_toml_str(&format!("{one}{one}"), "f").unwrap_err();
        assert!(err.to_string().contains("tree `t`: defined twice"), "{err}");
        let err = Policy::from_toml_str("", "f").unwrap_err();
        assert!(err.to_string().contains("no trees defined"), "{err}");
    }

    #[test]
    fn overrides_and_burst_resolve() {
        let text = level(
            "by = [\"category\"]\nlimit = 10\nwindow = \"30m\"\nalgorithm = \"gcra\"\nburst = 3\n\
             overrides = [{ when = { category = \"critical\" }, limit = 50, window = \"1h\" }]",
        );
        let p = Policy::from_toml_str(&text, "f").unwrap();
        let level = &p.trees()[0].levels[0];
        assert_eq!(level.spec.burst, 3);
        let critical = level.spec_for(&["critical"]);
        assert_eq!(
            (critical.limit, critical.window, critical.burst),
            (50, 3_600_000_000, 3)
        );
        assert_eq!(level.spec_for(&["other"]).limit, 10);
    }

    #[test]
    fn warns_about_large_sliding_logs() {
        let p = Policy::from_toml_str(&level("limit = 50000\nwindow = \"1h\""), "f").unwrap();
        assert_eq!(p.warnings().len(), 1);
        assert!(
            p.warnings()[0].contains("sliding_log keeps one entry"),
            "{:?}",
            p.warnings()
        );
    }
}
