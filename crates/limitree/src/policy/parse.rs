//! TOML → [`Policy`], with every problem reported with its place and its fix.
//!
//! Parsing happens in two steps: serde reads the document into loose "raw"
//! structs (numbers as `i64`, durations and algorithms as strings) so that a wrong
//! value reaches validation, where the error can name the tree, the level and the
//! field; then [`validate`] builds the typed model.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::error::{MAX_ECHO, Step, cut};
use super::{
    Algorithm, DEFAULT_MAX_BUCKETS, Level, LimitSpec, MAX_BY_KEYS, MAX_LEVELS, MAX_LIMIT,
    MAX_WINDOW, MIN_WINDOW, Override, Policy, PolicyError, PolicyErrors, SLIDING_LOG_WARN_LIMIT,
    Selection, Shares, TomlDocument, Tree, format_duration, parse_duration,
};
use crate::values::ValuesIndex;

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
    detailed: bool,
    #[serde(default)]
    overrides: Vec<RawOverride>,
    /// Fair sharing: value → units of the parent's limit guaranteed to it.
    #[serde(default)]
    shares: BTreeMap<String, i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    when: BTreeMap<String, String>,
    limit: Option<i64>,
    window: Option<toml::Value>,
    burst: Option<i64>,
    guaranteed: Option<i64>,
}

pub(super) fn parse_document(text: &str, source: &str) -> Result<Policy, PolicyErrors> {
    let doc = TomlDocument::parse(text, source).map_err(|e| PolicyErrors(vec![e]))?;
    parse_trees_of(&doc)
}

/// The `[[trees]]` of `doc` (its other keys are not the library's). Every
/// wrong type or unknown key is reported with its line and key path; the
/// trees and levels that did read are validated too, so one run lists the
/// problems of the whole file.
pub(super) fn parse_trees_of(doc: &TomlDocument<'_>) -> Result<Policy, PolicyErrors> {
    let source = doc.source();
    if !doc.has("trees") {
        return validate(Vec::new(), source, Some(doc), &[]);
    }
    let (raw, read_errors) = doc.deserialize::<Vec<RawTree>>("trees");
    let failed: Vec<Vec<Step>> = read_errors.iter().map(|(path, _)| path.clone()).collect();
    let mut errors: Vec<PolicyError> = read_errors.into_iter().map(|(_, e)| e).collect();
    match raw {
        None => {}
        Some(raw) => match validate(raw, source, Some(doc), &failed) {
            Ok(policy) if errors.is_empty() => return Ok(policy),
            Ok(_) => {}
            Err(more) => errors.extend(more.0),
        },
    }
    Err(PolicyErrors(errors))
}

pub(super) fn parse_trees_value(trees: toml::Value, source: &str) -> Result<Policy, PolicyErrors> {
    let raw: Vec<RawTree> = trees.try_into().map_err(|e| toml_error(source, &e))?;
    validate(raw, source, None, &[])
}

/// What the read errors at `failed` paths leave out of validation: a tree
/// with an error outside its levels, and each level with an error.
fn left_out(failed: &[Vec<Step>], tree: usize, level: Option<usize>) -> bool {
    failed
        .iter()
        .any(|path| match (path.get(1), path.get(2), path.get(3)) {
            (
                Some(Step::Index { index: t, .. }),
                Some(Step::Key(k)),
                Some(Step::Index { index: l, .. }),
            ) if k == "levels" => *t == tree && level == Some(*l),
            (Some(Step::Index { index: t, .. }), _, _) => *t == tree && level.is_none(),
            _ => false,
        })
}

/// The path of tree `tree` (named when its name is a valid one).
fn tree_path(tree: usize, name: &str) -> Vec<Step> {
    vec![
        Step::Key("trees".to_owned()),
        Step::Index {
            index: tree,
            name: valid_name(name).then(|| name.to_owned()),
        },
    ]
}

/// An error from a detached `toml::Value` (no line to name): toml gives the
/// keys after the message (`in \`levels.limit\``), which name the place.
fn toml_error(source: &str, e: &toml::de::Error) -> PolicyErrors {
    let text = e.to_string();
    let keys = text
        .lines()
        .find_map(|l| l.strip_prefix("in `"))
        .map(|k| k.trim_end_matches('`'));
    let mut path = vec![Step::Key("trees".to_owned())];
    path.extend(
        keys.into_iter()
            .flat_map(|k| k.split('.'))
            .map(|k| Step::Key(k.to_owned())),
    );
    let place = super::error::render_path(&path);
    let message = super::error::plain_words(e.message(), &path);
    PolicyErrors(vec![PolicyError::new(source, &place, message)])
}

/// Collects errors for one document.
struct Problems<'a> {
    source: &'a str,
    errors: Vec<PolicyError>,
    /// The document, to say on which line a problem is.
    doc: Option<&'a TomlDocument<'a>>,
    /// The path of what is being validated (a tree, a level, an override).
    at: Vec<Step>,
}

impl Problems<'_> {
    /// A problem with what is being validated as a whole, named by its key
    /// path (`trees[api].levels[user]`; `place` when there is none).
    fn push(&mut self, place: &str, message: impl Into<String>) {
        let location = self.doc.and_then(|d| d.location_of(&self.at));
        let place = self.place(&self.at, place);
        self.errors
            .push(PolicyError::located(self.source, location, &place, message));
    }

    /// A problem with its key `key`, named by its path
    /// (`trees[api].levels[user].limit`) and located at the key when it is
    /// given (else at what holds it).
    fn push_key(&mut self, place: &str, key: &str, message: impl Into<String>) {
        let mut path = self.at.clone();
        path.push(Step::Key(key.to_owned()));
        let location = self.doc.and_then(|d| d.location_of(&path));
        let place = self.place(&path, place);
        self.errors
            .push(PolicyError::located(self.source, location, &place, message));
    }

    fn place(&self, path: &[Step], place: &str) -> String {
        if self.at.is_empty() {
            place.to_owned()
        } else {
            super::error::render_path(path)
        }
    }
}

fn validate<'a>(
    raw_trees: Vec<RawTree>,
    source: &'a str,
    doc: Option<&'a TomlDocument<'a>>,
    failed: &[Vec<Step>],
) -> Result<Policy, PolicyErrors> {
    let mut problems = Problems {
        source,
        errors: Vec::new(),
        doc,
        at: Vec::new(),
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
        if left_out(failed, index, None) {
            continue;
        }
        problems.at = tree_path(index, &raw.name);
        let place = format!("tree `{}`", cut(&raw.name, MAX_ECHO));
        if !valid_name(&raw.name) {
            problems.push_key(
                &format!("tree #{}", index + 1),
                "name",
                format!(
                    "name `{}` is not allowed; use 1-64 letters, digits, `_`, `-` or `.`",
                    cut(&raw.name, MAX_ECHO)
                ),
            );
        }
        if !tree_names.insert(raw.name.clone()) {
            problems.push(&place, "defined twice; tree names must be unique");
        }
        let some_left_out = (0..raw.levels.len()).any(|l| left_out(failed, index, Some(l)));
        if raw.levels.is_empty() && !some_left_out {
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
        let raw_level_count = raw.levels.len();
        let mut levels = Vec::with_capacity(raw.levels.len());
        for (level_index, raw_level) in raw.levels.into_iter().enumerate() {
            if left_out(failed, index, Some(level_index)) {
                continue;
            }
            problems.at = tree_path(index, &raw.name);
            problems.at.extend([
                Step::Key("levels".to_owned()),
                Step::Index {
                    index: level_index,
                    name: valid_name(&raw_level.name).then(|| raw_level.name.clone()),
                },
            ]);
            let level_place = format!("{place}, level `{}`", cut(&raw_level.name, MAX_ECHO));
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
        // Shares bind two levels: checked once every level is valid (a
        // missing one would shift the parent).
        let shares = if levels.len() == raw_level_count {
            validate_shares(&levels, index, &raw.name, &place, &mut problems)
        } else {
            Vec::new()
        };
        trees.push(Tree {
            name: raw.name,
            levels,
            index,
            selection: Selection::Native,
            shares,
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
            let names = Algorithm::ALL.map(Algorithm::as_str);
            let hint = super::error::closest(name, names)
                .map(|best| format!("did you mean `{best}`? "))
                .unwrap_or_default();
            problems.push_key(
                place,
                "algorithm",
                format!(
                    "algorithm `{}` is unknown; {hint}use one of `sliding_log`, `sliding_window`, `gcra`, `fixed_window`",
                    cut(name, MAX_ECHO)
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
        problems.push_key(
            place,
            "burst",
            format!("`burst` applies only to `algorithm = \"gcra\"`, not `{algorithm}`; remove it or switch the algorithm"),
        );
    }
    let burst = raw
        .burst
        .and_then(|b| positive(b, "burst", place, problems));

    let mut by_seen = HashSet::new();
    for key in &raw.by {
        if key.is_empty() || key.len() > 256 {
            problems.push_key(place, "by", "a `by` key is empty or longer than 256 bytes");
        }
        if !by_seen.insert(key) {
            problems.push_key(
                place,
                "by",
                format!("`by` names `{}` twice", cut(key, MAX_ECHO)),
            );
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
    if raw.by.is_empty() && raw.detailed {
        problems.push(
            place,
            "`detailed = true` needs `by` keys: a level without `by` has no values to show",
        );
    }
    if raw.by.is_empty() && !raw.overrides.is_empty() {
        problems.push(place, "`overrides` need `by` keys to match on");
    }
    if !raw.shares.is_empty() && raw.by.len() != 1 {
        problems.push_key(
            place,
            "shares",
            format!(
                "`shares` name values of one `by` key, but this level has {}; use \
                 `guaranteed = N` inside an `overrides` entry instead",
                raw.by.len()
            ),
        );
    }
    let max_buckets = match raw.max_buckets {
        None => DEFAULT_MAX_BUCKETS,
        Some(n) => positive(n, "max_buckets", place, problems).map_or(DEFAULT_MAX_BUCKETS, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
    };

    let (limit, window) = (limit?, window?);
    let spec = LimitSpec::new(algorithm, limit, window, burst.unwrap_or(limit));
    check_spec(&spec, place, problems);

    let mut overrides: Vec<Override> = Vec::new();
    let level_at = problems.at.clone();
    for (i, raw_override) in raw.overrides.into_iter().enumerate() {
        let oplace = format!("{place}, override #{}", i + 1);
        problems.at = level_at.clone();
        problems.at.extend([
            Step::Key("overrides".to_owned()),
            Step::Index {
                index: i,
                name: None,
            },
        ]);
        if let Some(o) = validate_override(raw_override, &raw.by, &spec, &oplace, problems) {
            if overrides.iter().any(|other| other.values == o.values) {
                problems.push(&oplace, "matches the same values as an earlier override");
            }
            overrides.push(o);
        }
    }
    if raw.by.len() == 1 {
        for (value, n) in &raw.shares {
            let Some(guaranteed) = positive(*n, "shares", place, problems) else {
                continue;
            };
            match overrides.iter_mut().find(|o| o.values == [value.clone()]) {
                Some(o) if o.guaranteed.is_some() => problems.push_key(
                    place,
                    "shares",
                    format!(
                        "`{}` has a guarantee both in `shares` and in `overrides`; keep one",
                        cut(value, MAX_ECHO)
                    ),
                ),
                Some(o) => o.guaranteed = Some(guaranteed),
                None => overrides.push(Override {
                    values: vec![value.clone()],
                    spec,
                    guaranteed: Some(guaranteed),
                }),
            }
        }
    }

    problems.at = level_at;
    (problems.errors.len() == before).then_some(Level {
        name: raw.name,
        by: raw.by,
        spec,
        override_index: ValuesIndex::new(overrides.iter().map(|o| o.values.as_slice())),
        overrides,
        shadow: raw.shadow,
        required,
        max_buckets,
        detailed: raw.detailed,
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
    let spec = LimitSpec::new(base.algorithm, limit, window, burst);
    check_spec(&spec, place, problems);
    let guaranteed = match raw.guaranteed {
        Some(n) => Some(positive(n, "guaranteed", place, problems)?),
        None => None,
    };
    (values.len() == by.len()).then_some(Override {
        values,
        spec,
        guaranteed,
    })
}

/// The tree's [`Shares`], one per level that gives guarantees: the level
/// directly above it must be a non-shadow level whose limit holds the sum of
/// the guarantees — a global one, or a keyed one whose `by` keys the child
/// does not repeat (each of its buckets is split for the same values; a
/// bucket one of its overrides matches from that override's limit, which
/// must hold the guarantees too). Several levels may give them: a level
/// between two is both a child and a parent.
fn validate_shares(
    levels: &[Level],
    tree_index: usize,
    tree_name: &str,
    place: &str,
    problems: &mut Problems<'_>,
) -> Vec<Shares> {
    let mut found: Vec<Shares> = Vec::new();
    for (child, level) in levels.iter().enumerate() {
        let guarantees: Vec<(Vec<String>, u64)> = level
            .overrides
            .iter()
            .filter_map(|o| Some((o.values.clone(), o.guaranteed?)))
            .collect();
        if guarantees.is_empty() {
            continue;
        }
        problems.at = tree_path(tree_index, tree_name);
        problems.at.extend([
            Step::Key("levels".to_owned()),
            Step::Index {
                index: child,
                name: Some(level.name.clone()),
            },
        ]);
        let level_place = format!("{place}, level `{}`", level.name);
        let Some(parent) = child.checked_sub(1).map(|p| &levels[p]) else {
            problems.push(
                &level_place,
                "gives guaranteed shares, but it is the root level: a share is part of the \
                 level directly above; move the level below a global one",
            );
            continue;
        };
        // A keyed parent is split the same way in each of its buckets, so
        // every bucket must hold the same limit, and a guarantee must not
        // name the parent's values (it would reserve part of every parent
        // bucket for values only one of them ever sees).
        // A child that repeats the parent's `by` keys gives each guarantee
        // in the one parent bucket its values name; it must repeat all of
        // them (else a guarantee would name several parent buckets).
        let repeats = !parent.by.is_empty() && parent.by.iter().all(|k| level.by.contains(k));
        if !repeats && let Some(key) = level.by.iter().find(|k| parent.by.contains(k)) {
            let missing: Vec<&str> = parent
                .by
                .iter()
                .filter(|k| !level.by.contains(k))
                .map(String::as_str)
                .collect();
            problems.push(
                &level_place,
                format!(
                    "gives guaranteed shares of level `{}` and repeats its `by` key `{}` but not \
                     `{}`; a guarantee lives in the bucket of `{}` its values name, so repeat \
                     all of that level's `by` keys here, or none",
                    parent.name,
                    key,
                    missing.join("`, `"),
                    parent.name
                ),
            );
            continue;
        }
        if parent.shadow {
            problems.push(
                &level_place,
                format!(
                    "gives guaranteed shares of level `{}`, a shadow level (it never denies, so \
                     there is nothing to share); remove `shadow` there or the shares here",
                    parent.name
                ),
            );
            continue;
        }
        // (With repeated keys each parent bucket holds only its own: checked
        // per bucket below.)
        let reserved: u64 = guarantees.iter().map(|(_, g)| g).sum();
        if !repeats && reserved > parent.spec.limit {
            problems.push(
                &level_place,
                format!(
                    "the guaranteed shares sum to {reserved}, more than the {} of level `{}` \
                     they are part of; lower them so they sum to at most {}",
                    parent.spec.limit, parent.name, parent.spec.limit
                ),
            );
            continue;
        }
        // Position of each of the parent's `by` keys in the child's (a child
        // that repeats them): a guarantee's parent bucket.
        let parent_values = |values: &[String]| -> Vec<String> {
            parent
                .by
                .iter()
                .filter_map(|k| level.by.iter().position(|c| c == k))
                .map(|i| values[i].clone())
                .collect()
        };
        // The parent buckets split otherwise than the rest: the overridden
        // ones (their own limits) and, when the child repeats the parent's
        // keys, those its guarantees name (their own guarantees; the rest
        // hold none).
        let mut own: Vec<Vec<String>> = parent.overrides.iter().map(|o| o.values.clone()).collect();
        if repeats {
            for (values, _) in &guarantees {
                let v = parent_values(values);
                if !own.contains(&v) {
                    own.push(v);
                }
            }
        }
        let guarantees_of = |bucket: Option<&[String]>| -> Vec<(Vec<String>, u64)> {
            guarantees
                .iter()
                .filter(|(values, _)| match bucket {
                    Some(b) if repeats => parent_values(values) == b,
                    None if repeats => false,
                    _ => true,
                })
                .cloned()
                .collect()
        };
        let label = |values: &[String]| -> String {
            parent
                .by
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}={}", cut(v, MAX_ECHO)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut splits: Vec<(Option<Vec<String>>, Shares)> = vec![(
            None,
            Shares::split(child - 1, child, &parent.spec, guarantees_of(None)),
        )];
        for values in own {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let spec = parent.spec_for(&refs);
            let split = Shares::split(child - 1, child, spec, guarantees_of(Some(&values)));
            splits.push((Some(values), split));
        }
        let mut fits = true;
        for (values, split) in &splits {
            let spec = match values {
                Some(v) => parent.spec_for(&v.iter().map(String::as_str).collect::<Vec<_>>()),
                None => &parent.spec,
            };
            let of = match values {
                Some(v) => format!("the bucket {} of level `{}`", label(v), parent.name),
                None => format!("level `{}`", parent.name),
            };
            if split.reserved > spec.limit {
                fits = false;
                problems.push(
                    &level_place,
                    format!(
                        "the guaranteed shares in {of} sum to {}, more than its limit {}; lower \
                         them so they sum to at most {}, or raise that limit",
                        split.reserved, spec.limit, spec.limit
                    ),
                );
                continue;
            }
            for part in &split.parts {
                if part.spec.capacity() == 0 {
                    problems.push(
                        &level_place,
                        format!(
                            "the guarantee of {} for `{}` is less than one unit of the gcra burst \
                             {} of {of} (limit {}); raise it to at least {}",
                            part.guaranteed,
                            cut(&part.values.join(","), MAX_ECHO),
                            spec.burst,
                            spec.limit,
                            spec.limit.div_ceil(spec.burst.max(1)),
                        ),
                    );
                }
                check_spec(&part.spec, &level_place, problems);
            }
            check_spec(&split.pool, &level_place, problems);
        }
        if !fits {
            continue;
        }
        let mut splits = splits.into_iter();
        let Some((_, mut shares)) = splits.next() else {
            continue;
        };
        shares.set_per_bucket(
            splits
                .filter_map(|(values, split)| Some((values?, split)))
                .collect(),
        );
        found.push(shares);
    }
    found
}

fn positive(n: i64, field: &str, place: &str, problems: &mut Problems<'_>) -> Option<u64> {
    if n <= 0 {
        let hint = if field == "limit" {
            " (a level that admits nothing is not a limit; to block traffic, do it before the limiter)"
        } else {
            ""
        };
        problems.push_key(
            place,
            field,
            format!("`{field}` is {n}; it must be at least 1{hint}"),
        );
        return None;
    }
    let n = n.unsigned_abs();
    if n > MAX_LIMIT {
        problems.push_key(
            place,
            field,
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
            problems.push_key(
                place,
                "window",
                format!("window `{n}` has no unit; write `\"{n}s\"` or `\"{n}ms\"`"),
            );
            return None;
        }
        other => {
            problems.push_key(
                place,
                "window",
                format!(
                    "window `{}` is not a duration; write e.g. `\"30m\"`",
                    cut(&other.to_string(), MAX_ECHO)
                ),
            );
            return None;
        }
    };
    let us = match parse_duration(text) {
        Ok(us) => us,
        Err(e) => {
            problems.push_key(place, "window", format!("window {e}"));
            return None;
        }
    };
    if us < MIN_WINDOW {
        problems.push_key(
            place,
            "window",
            format!(
                "window `{}` is shorter than 1ms; windows are at least `1ms`",
                cut(text, MAX_ECHO)
            ),
        );
        return None;
    }
    if us > MAX_WINDOW {
        problems.push_key(
            place,
            "window",
            format!(
                "window `{}` is longer than a year (`366d`), the longest allowed",
                cut(text, MAX_ECHO)
            ),
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

    #[test]
    fn detailed_is_off_unless_asked() {
        let p = Policy::from_toml_str(
            &format!(
                "{}[[trees.levels]]\nname = \"m\"\nby = [\"a\"]\nlimit = 1\nwindow = \"1s\"\ndetailed = true\n",
                level("by = [\"a\"]\nlimit = 1\nwindow = \"1s\"")
            ),
            "limits.toml",
        )
        .unwrap();
        let levels = &p.tree("t").unwrap().levels;
        assert!(!levels[0].detailed);
        assert!(levels[1].detailed);
    }

    #[rstest]
    #[case::zero_limit("limit = 0\nwindow = \"1s\"", "`limit` is 0; it must be at least 1")]
    #[case::negative_limit("limit = -3\nwindow = \"1s\"", "`limit` is -3")]
    #[case::huge_limit("limit = 2000000000\nwindow = \"1s\"", "the largest allowed")]
    #[case::missing_limit("window = \"1s\"", "`limit` is missing")]
    #[case::missing_window("limit = 1", "`window` is missing")]
    #[case::word_window(
        "limit = 1\nwindow = \"30 minutes\"",
        "trees[t].levels[l].window: window `30 minutes` is not a duration; write `30m`"
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
    #[case::detailed_global(
        "limit = 1\nwindow = \"1s\"\ndetailed = true",
        "`detailed = true` needs `by` keys"
    )]
    #[case::detailed_not_a_bool(
        "limit = 1\nwindow = \"1s\"\nby = [\"a\"]\ndetailed = \"yes\"",
        "detailed"
    )]
    #[case::duplicate_by(
        "limit = 1\nwindow = \"1s\"\nby = [\"a\", \"a\"]",
        "`by` names `a` twice"
    )]
    #[case::unknown_field(
        "limit = 1\nwindow = \"1s\"\nlimt = 3",
        "unknown key `limt`; did you mean `limit`?"
    )]
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

    /// Broken documents: each message names the line and column, the key path
    /// and the fix, in words (no `i64`, no `map`/`sequence`).
    #[rstest]
    #[case::quoted_number(
        "[[trees]]\nname = \"notifications\"\n[[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = \"10\"\nwindow = \"30m\"\n",
        &["f.toml: line 6, column 9: trees[notifications].levels[category].limit: expected a whole number, found the string \"10\"; remove the quotes: limit = 10"]
    )]
    #[case::single_bracket_levels(
        "[[trees]]\nname = \"n\"\n[trees.levels]\nname = \"x\"\nlimit = 1\nwindow = \"1s\"\n",
        &["f.toml: line 3, column 1: trees[n].levels: expected a list, found a table; write each entry as its own `[[trees.levels]]` table (double brackets)"]
    )]
    #[case::typo(
        "[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"x\"\nlimit = 1\nwidnow = \"1s\"\n",
        &["f.toml: line 6, column 1: trees[n].levels[x].widnow: unknown key `widnow`; did you mean `window`?"]
    )]
    #[case::every_level_at_once(
        "[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"a\"\nlimit = \"10\"\nwindow = \"1s\"\n[[trees.levels]]\nname = \"b\"\nlimit = 1\nwindow = 5\nburst = true\n[[trees.levels]]\nname = \"c\"\nlimit = 0\nwindow = \"1s\"\n",
        &[
            "f.toml: line 5, column 9: trees[n].levels[a].limit: expected a whole number",
            "f.toml: line 11, column 9: trees[n].levels[b].burst: expected a whole number, found true",
            "f.toml: line 14, column 9: trees[n].levels[c].limit: `limit` is 0",
        ]
    )]
    #[case::validation_names_the_line(
        "[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"x\"\nlimit = 1\nwindow = \"30 minutes\"\n",
        &["f.toml: line 6, column 10: trees[n].levels[x].window: window `30 minutes` is not a duration; write `30m`"]
    )]
    #[case::unknown_algorithm(
        "[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"x\"\nlimit = 1\nwindow = \"1s\"\nalgorithm = \"sliding_windows\"\n",
        &["f.toml: line 7, column 13: trees[n].levels[x].algorithm: algorithm `sliding_windows` is unknown; did you mean `sliding_window`?"]
    )]
    #[case::syntax(
        "[[trees]]\nname = = \"n\"\n",
        &["f.toml: line 2, column 8: extra `=`; the line reads: name = = \"n\""]
    )]
    #[case::long_value_is_cut(
        &format!("[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"x\"\nlimit = 1\nwindow = \"{}\"\n", "9".repeat(5000)),
        &["f.toml: line 6, column 10: trees[n].levels[x].window: window `999"]
    )]
    fn broken_documents(#[case] text: &str, #[case] expected: &[&str]) {
        let err = Policy::from_toml_str(text, "f.toml").unwrap_err();
        let messages: Vec<String> = err.errors().iter().map(ToString::to_string).collect();
        for want in expected {
            assert!(
                messages.iter().any(|m| m.starts_with(want)),
                "{want:?} not in {messages:#?}"
            );
        }
        assert!(messages.iter().all(|m| m.len() < 400), "{messages:#?}");
        for rust in ["i64", "u64", "map", "sequence", "invalid type"] {
            assert!(
                messages.iter().all(|m| !m.contains(rust)),
                "{rust} in {messages:#?}"
            );
        }
    }

    #[test]
    fn detached_values_are_reported_in_words() {
        let doc: toml::Table = toml::from_str(&level("limit = \"10\"\nwindow = \"1s\"")).unwrap();
        let trees = doc["trees"].clone();
        let err = Policy::from_toml_trees(trees, "f.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "f.toml: trees.levels.limit: expected a whole number, found the string \"10\"; remove the quotes: limit = 10"
        );
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
                .contains("trees[t].levels[a]: defined twice")
        );
    }

    #[test]
    fn rejects_duplicate_trees_and_empty_documents() {
        let one =
            "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"a\"\nlimit = 1\nwindow = \"1s\"\n";
        let err = Policy::from_toml_str(&format!("{one}{one}"), "f").unwrap_err();
        assert!(err.to_string().contains("trees[t]: defined twice"), "{err}");
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

    /// A level with many overrides (looked up by index, not by a scan) gives
    /// each value its own limit, and every other value the level's.
    #[test]
    fn each_of_many_overrides_resolves() {
        let overrides: Vec<String> = (1..=50)
            .map(|i| format!("{{ when = {{ customer = \"c{i}\" }}, limit = {i} }}"))
            .collect();
        let text = level(&format!(
            "by = [\"customer\"]\nlimit = 1000\nwindow = \"1m\"\noverrides = [{}]",
            overrides.join(", ")
        ));
        let p = Policy::from_toml_str(&text, "f").unwrap();
        let level = &p.trees()[0].levels[0];
        for i in 1..=50u64 {
            assert_eq!(level.spec_for(&[&format!("c{i}")]).limit, i);
        }
        assert_eq!(level.spec_for(&["c51"]).limit, 1000);
        assert_eq!(level.override_for(&["c0"]), None);
    }

    fn two_levels(parent: &str, child: &str) -> String {
        format!(
            "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"global\"\nwindow = \"30m\"\n{parent}\n\
             [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n{child}\n"
        )
    }

    #[rstest]
    #[case::more_than_the_parent(
        "limit = 10",
        "shares = { a = 6, b = 5 }",
        "f.toml: line 7, column 1: trees[t].levels[category]: the guaranteed shares sum to 11, more than the 10 \
         of level `global` they are part of; lower them so they sum to at most 10"
    )]
    #[case::shadow_parent("limit = 10\nshadow = true", "shares = { a = 1 }", "a shadow level")]
    #[case::more_than_a_parent_override(
        "limit = 10\nby = [\"tenant\"]\noverrides = [{ when = { tenant = \"x\" }, limit = 3 }]",
        "shares = { a = 2, b = 2 }",
        "f.toml: line 9, column 1: trees[t].levels[category]: the guaranteed shares in the bucket \
         tenant=x of level `global` sum to 4, more than its limit 3; lower them so they sum to at \
         most 3, or raise that limit"
    )]
    #[case::child_repeats_some_parent_keys(
        "limit = 10\nby = [\"category\", \"region\"]",
        "overrides = [{ when = { category = \"a\" }, guaranteed = 1 }]",
        "repeats its `by` key `category` but not `region`"
    )]
    #[case::more_than_a_parent_bucket(
        "limit = 10\nby = [\"category\"]",
        "shares = { a = 11 }",
        "the guaranteed shares in the bucket category=a of level `global` sum to 11, more than its limit 10"
    )]
    #[case::zero_share(
        "limit = 10",
        "shares = { a = 0 }",
        "`shares` is 0; it must be at least 1"
    )]
    #[case::twice(
        "limit = 10",
        "shares = { a = 1 }\noverrides = [{ when = { category = \"a\" }, guaranteed = 2 }]",
        "`a` has a guarantee both in `shares` and in `overrides`"
    )]
    #[case::less_than_a_burst_unit(
        "limit = 10\nalgorithm = \"gcra\"\nburst = 2",
        "algorithm = \"gcra\"\nshares = { a = 4 }",
        "the guarantee of 4 for `a` is less than one unit of the gcra burst 2"
    )]
    fn rejects_shares(#[case] parent: &str, #[case] child: &str, #[case] expected: &str) {
        let err = Policy::from_toml_str(&two_levels(parent, child), "f.toml").unwrap_err();
        let messages: Vec<String> = err.errors().iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "{expected:?} not in {messages:#?}"
        );
    }

    /// Several levels may give shares: the middle one (`team`) is split for
    /// `category` while its values hold guarantees in `global`.
    #[test]
    fn several_levels_give_shares() {
        let text = "[[trees]]\nname = \"t\"\n\
            [[trees.levels]]\nname = \"global\"\nlimit = 20\nwindow = \"1m\"\n\
            [[trees.levels]]\nname = \"team\"\nby = [\"team\"]\nlimit = 10\nwindow = \"1m\"\nshares = { a = 6 }\n\
            [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 5\nwindow = \"1m\"\nshares = { e = 4 }\n";
        let p = Policy::from_toml_str(text, "f").unwrap();
        let tree = &p.trees()[0];
        let splits: Vec<(usize, usize, u64, u64)> = tree
            .shares
            .iter()
            .map(|s| (s.parent, s.child, s.reserved, s.pool.limit))
            .collect();
        assert_eq!(splits, [(0, 1, 6, 14), (1, 2, 4, 6)]);
        assert_eq!(tree.split_of(1).map(|s| s.child), Some(2));
    }

    #[test]
    fn a_root_level_has_nothing_to_share() {
        let err = Policy::from_toml_str(
            &level("by = [\"c\"]\nlimit = 5\nwindow = \"1s\"\nshares = { a = 1 }"),
            "f",
        )
        .unwrap_err();
        assert!(err.to_string().contains("it is the root level"), "{err}");
    }

    #[test]
    fn shares_split_the_parent_into_guarantees_and_a_pool() {
        let text = two_levels(
            "limit = 100\nalgorithm = \"gcra\"\nburst = 50",
            "algorithm = \"gcra\"\nshares = { errors = 4, warnings = 6 }\n\
             overrides = [{ when = { category = \"info\" }, limit = 3, guaranteed = 10 }]",
        );
        let p = Policy::from_toml_str(&text, "f").unwrap();
        let shares = p.trees()[0].shares.first().unwrap();
        assert_eq!((shares.parent, shares.child, shares.reserved), (0, 1, 20));
        let parts: Vec<(String, u64, u64, u64)> = shares
            .parts
            .iter()
            .map(|p| (p.values.join(","), p.guaranteed, p.spec.limit, p.spec.burst))
            .collect();
        assert_eq!(
            parts,
            [
                ("info".to_owned(), 10, 10, 5),
                ("errors".to_owned(), 4, 4, 2),
                ("warnings".to_owned(), 6, 6, 3)
            ]
        );
        assert_eq!((shares.pool.limit, shares.pool.burst), (80, 40));
        // A guaranteed value keeps its ceiling: the level's, or its override's.
        let level = &p.trees()[0].levels[1];
        assert_eq!(level.spec_for(&["errors"]).limit, 10);
        assert_eq!(level.spec_for(&["info"]).limit, 3);
    }

    /// A keyed parent is split in each of its buckets alike: one [`Shares`]
    /// for the tree, the guarantees named by the child's values only.
    #[test]
    fn a_keyed_parent_is_split_like_a_global_one() {
        let text = two_levels(
            "limit = 100\nby = [\"team\"]",
            "shares = { errors = 4, warnings = 4 }",
        );
        let p = Policy::from_toml_str(&text, "f").unwrap();
        let shares = p.trees()[0].shares.first().unwrap();
        assert_eq!((shares.parent, shares.child, shares.reserved), (0, 1, 8));
        assert_eq!(shares.pool.limit, 92);
        assert_eq!(shares.part_for(&["errors"]), Some(0));
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
