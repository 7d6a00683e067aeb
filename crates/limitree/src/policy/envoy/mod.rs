//! envoyproxy/ratelimit's YAML config: parsing, validation, and descriptor matching.
//!
//! limitree serves Envoy's `RateLimitService`, and users bring the config they
//! already wrote for envoyproxy/ratelimit. This module is the pure half of that:
//! text in, a validated [`Domain`] out, and [`Domain::matches`] to find which rule
//! a request descriptor lands on and which bucket it counts in. No I/O: the caller
//! reads files (and lists a directory), the gRPC layer and the stores do the rest.
//!
//! Deciding is elsewhere: [`Policy::from_envoy_domains`](crate::Policy::from_envoy_domains)
//! turns domains into trees (`tree.rs`, [`DomainTree`]), and
//! [`Tree::chain_for_descriptors`](crate::policy::Tree::chain_for_descriptors)
//! builds one call's chain from its matches.
//!
//! Matching follows envoyproxy/ratelimit's `GetLimit` (see [`Domain::matches`]);
//! the differences are deliberate and listed in the README's section
//! "envoyproxy/ratelimit configs".

mod load;
pub(crate) mod tree;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use super::{LimitSpec, MAX_BY_KEYS, PolicyErrors};
use crate::clock::Micros;

pub use tree::DomainTree;

/// Deepest nesting of YAML lists and mappings a config may have (each
/// descriptor level uses two).
pub const MAX_NESTING: usize = yaml::MAX_DEPTH;
/// Largest config text accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = yaml::MAX_BYTES;

/// envoyproxy/ratelimit's time units, with its lengths: a month is 30 days and a
/// year 365 days, and windows are aligned to the Unix epoch (as its cache keys are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// 1 s.
    Second,
    /// 60 s.
    Minute,
    /// 3 600 s.
    Hour,
    /// 86 400 s.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    Month,
    /// 365 days.
    Year,
}

impl Unit {
    /// Every unit, shortest first.
    pub const ALL: [Unit; 7] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    /// The name in config files (lower case; files may use any case, as
    /// envoyproxy/ratelimit upper-cases them).
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// Parses a unit name, ignoring case.
    pub fn from_name(name: &str) -> Option<Unit> {
        Self::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(name))
    }

    /// The unit's length in microseconds.
    pub fn micros(self) -> Micros {
        const S: Micros = 1_000_000;
        match self {
            Unit::Second => S,
            Unit::Minute => 60 * S,
            Unit::Hour => 3_600 * S,
            Unit::Day => 86_400 * S,
            Unit::Week => 7 * 86_400 * S,
            Unit::Month => 30 * 86_400 * S,
            Unit::Year => 365 * 86_400 * S,
        }
    }

    /// The unit exactly `window` long, if there is one.
    pub fn exactly(window: Micros) -> Option<Unit> {
        Self::ALL.into_iter().find(|u| u.micros() == window)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does to the requests that land on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleLimit {
    /// Counted in a bucket that holds `spec`.
    Limited(LimitSpec),
    /// `requests_per_unit: 0`: every request is over the limit, nothing is
    /// counted. Kept apart because a [`LimitSpec`] of limit 0 is not a limit the
    /// algorithms (or the TOML policy) accept. `window` is what Envoy is told.
    Blocked {
        /// The window the rule was written with.
        window: Micros,
    },
    /// `unlimited: true`: always OK, never counted (envoyproxy/ratelimit answers
    /// these without asking its cache, with `limit_remaining` = `u32::MAX`).
    Unlimited,
}

/// One rule of a domain: a descriptor node that has a `rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Stable and unique in the domain: the YAML `rate_limit.name` when given,
    /// otherwise the descriptor path ([`Rule::path`]).
    pub name: String,
    /// Where the rule sits in the descriptor tree: `key=value` or `key` (no
    /// value) per level, joined by `.`, e.g. `message_type=marketing.to_number`.
    pub path: String,
    /// The YAML `rate_limit.name`, which other rules' `replaces` refer to.
    pub yaml_name: Option<String>,
    /// What the rule does.
    pub limit: RuleLimit,
    /// The envoyproxy/ratelimit unit: as written, or the unit a limitree
    /// `window` is exactly equal to; `None` for a window that is no single unit
    /// (Envoy is then told `UNKNOWN`, see the README section).
    pub unit: Option<Unit>,
    /// Requests per window, as written (0 for [`RuleLimit::Blocked`] and for
    /// [`RuleLimit::Unlimited`]).
    pub requests_per_unit: u64,
    /// `shadow_mode`: counted and reported, never denies.
    pub shadow: bool,
    /// `detailed_metric`: metrics keep the request's values.
    pub detailed_metric: bool,
    /// `value_to_metric`: metrics keep the request's value at this level.
    pub value_to_metric: bool,
    /// Names (YAML `name`s) of rules this rule replaces in a request that matches both.
    pub replaces: Vec<String>,
    /// The line of the rule's `rate_limit` in its file.
    pub line: usize,
}

impl Rule {
    /// Whether the rule is `unlimited: true`.
    pub fn unlimited(&self) -> bool {
        matches!(self.limit, RuleLimit::Unlimited)
    }

    /// The counted limit, if the rule has one.
    pub fn spec(&self) -> Option<&LimitSpec> {
        match &self.limit {
            RuleLimit::Limited(spec) => Some(spec),
            RuleLimit::Blocked { .. } | RuleLimit::Unlimited => None,
        }
    }
}

/// What `limitree config check` prints for a rule, e.g.
/// `to_number: 100 per day (1d, fixed_window)` or
/// `remote_address=50.0.0.5: 0 per second (always over limit)`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if self.name != self.path {
            write!(f, " [{}]", self.path)?;
        }
        let per = |window: Micros| match self.unit {
            Some(unit) => unit.as_str().to_owned(),
            None => super::format_duration(window),
        };
        match &self.limit {
            RuleLimit::Limited(spec) => {
                write!(
                    f,
                    ": {} per {} ({}, {}",
                    spec.limit,
                    per(spec.window),
                    super::format_duration(spec.window),
                    spec.algorithm
                )?;
                if spec.algorithm == super::Algorithm::Gcra {
                    write!(f, ", burst {}", spec.burst)?;
                }
                f.write_str(")")?;
            }
            RuleLimit::Blocked { window } => {
                write!(f, ": 0 per {} (always over limit)", per(*window))?;
            }
            RuleLimit::Unlimited => f.write_str(": unlimited")?,
        }
        if self.shadow {
            f.write_str(", shadow mode")?;
        }
        if !self.replaces.is_empty() {
            write!(f, ", replaces {}", self.replaces.join(", "))?;
        }
        Ok(())
    }
}

/// A parsed, validated envoyproxy/ratelimit config file: one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The `domain`: what Envoy's requests name (limitree's tree).
    pub name: String,
    /// Every rule, in file order.
    pub rules: Vec<Rule>,
    /// Legal but probably not meant (e.g. `replaces` naming no rule).
    pub warnings: Vec<String>,
    /// The file the domain came from.
    pub source: String,
    root: Level,
    nodes: Vec<Node>,
}

/// The descriptor list of one level, indexed the way matching looks it up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Level {
    by_key: HashMap<String, KeyEntries>,
}

/// All descriptors of one level that share a `key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyEntries {
    exact: HashMap<String, usize>,
    /// File order: the first pattern that matches wins, as in envoyproxy/ratelimit.
    wildcards: Vec<(Pattern, usize)>,
    key_only: Option<usize>,
}

/// A descriptor node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    rule: Option<usize>,
    children: Level,
    /// `share_threshold` on a wildcard node: the bucket holds the pattern,
    /// not the request's value, so every matching value shares one counter.
    shared_pattern: Option<String>,
}

/// A value with `*` wildcards, each matching zero or more characters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
}

impl Pattern {
    fn new(value: &str) -> Pattern {
        Pattern {
            parts: value.split('*').map(str::to_owned).collect(),
        }
    }

    /// Whether `value` matches: it starts with the first literal part, ends with
    /// the last, and holds the middle parts in order between them, without overlap.
    fn matches(&self, value: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return value.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return value == first;
        };
        let fixed: usize = self.parts.iter().map(String::len).sum();
        if value.len() < fixed
            || !value.starts_with(first.as_str())
            || !value.ends_with(last.as_str())
        {
            return false;
        }
        let mut inner = &value[first.len()..value.len() - last.len()];
        for part in middle {
            match inner.find(part.as_str()) {
                Some(at) => inner = &inner[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Where a request descriptor landed: the rule, and the bucket it counts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'a> {
    /// Index of the rule in [`Domain::rules`].
    pub rule_index: usize,
    /// The rule.
    pub rule: &'a Rule,
    /// The bucket's identity: the descriptor's entries as matched — the
    /// request's own values (also for wildcard and key-only nodes, so each
    /// distinct value has its own bucket), except at a `share_threshold`
    /// wildcard node, where the value is the pattern (one bucket for all).
    /// envoyproxy/ratelimit builds its cache key from exactly these pairs.
    pub bucket: Vec<(String, String)>,
}

impl Match<'_> {
    /// The bucket as one string, `key=value.key2=value2` (for display and logs;
    /// stores should key on [`Match::bucket`] itself, which cannot collide).
    pub fn bucket_label(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.bucket.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

/// Entry point for envoyproxy/ratelimit configs.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyConfig;

impl EnvoyConfig {
    /// Parses and validates one YAML file (one domain). `source` names the file
    /// in errors; every error gives its line (and column), the key path and a fix.
    pub fn from_yaml_str(text: &str, source: &str) -> Result<Domain, PolicyErrors> {
        load::load(text, source)
    }

    /// Like [`EnvoyConfig::from_yaml_str`] for a file's raw bytes: text that is
    /// not UTF-8 is an error naming the line where it stops being UTF-8.
    pub fn from_yaml_bytes(bytes: &[u8], source: &str) -> Result<Domain, PolicyErrors> {
        match std::str::from_utf8(bytes) {
            Ok(text) => load::load(text, source),
            Err(e) => {
                let good = &bytes[..e.valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                let col = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
                Err(PolicyErrors(vec![super::PolicyError::new(
                    source,
                    &format!("line {line}, byte {col} of the line"),
                    "the file is not UTF-8 text; save it as UTF-8 (YAML config files are text)",
                )]))
            }
        }
    }

    /// Parses several files (a directory's, in the caller's order: sort them for
    /// a stable result) as envoyproxy/ratelimit loads its runtime directory: every
    /// domain once; a domain defined in two files is an error naming both.
    /// Errors of all files are collected.
    pub fn from_yaml_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<Domain>, PolicyErrors> {
        let mut domains: Vec<Domain> = Vec::new();
        let mut errors = Vec::new();
        for (source, text) in files {
            match load::load(text, source) {
                Ok(domain) => {
                    if let Some(first) = domains.iter().find(|d| d.name == domain.name) {
                        errors.push(super::PolicyError::new(
                            source,
                            "",
                            format!(
                                "domain `{}` is already defined in {}; each domain must be in one file \
                                 (merge the two files' descriptors, or rename one domain)",
                                load::shorten(&domain.name),
                                first.source
                            ),
                        ));
                    } else {
                        domains.push(domain);
                    }
                }
                Err(e) => errors.extend(e.0),
            }
        }
        if errors.is_empty() {
            Ok(domains)
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

impl Domain {
    /// Same as [`EnvoyConfig::from_yaml_str`].
    pub fn from_yaml_str(text: &str, source: &str) -> Result<Domain, PolicyErrors> {
        load::load(text, source)
    }

    /// The rule called `name` ([`Rule::name`]).
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Finds the rule one request descriptor lands on, as envoyproxy/ratelimit does:
    ///
    /// - entries are taken in order, each one level deeper in the tree;
    /// - at each level the entry's `key` and `value` are looked up: an exact
    ///   `key`+`value` descriptor first, then `key` with a wildcard value (the first
    ///   in file order that matches), then `key` alone (no value: any value,
    ///   each value its own bucket);
    /// - a level that matches nothing ends the search: no rule;
    /// - the rule is the one of the node where the **last** entry lands. A
    ///   descriptor shorter than the path to a rule does not reach it, and one
    ///   longer than the tree (entries left after a node without children)
    ///   matches nothing, even if a node on the way has a rule. The search never
    ///   backtracks: once an exact value matched, a key-only sibling is not tried.
    ///
    /// `None`: no limit applies (envoyproxy/ratelimit answers `OK` without a
    /// limit). Use [`Domain::match_request`] for all descriptors of one request,
    /// which also applies `replaces`.
    pub fn matches(&self, descriptor: &[(&str, &str)]) -> Option<Match<'_>> {
        let mut bucket = Vec::with_capacity(descriptor.len());
        let rule_index = self.walk(descriptor, |key, value| {
            bucket.push((key.to_owned(), value.to_owned()));
            true
        })?;
        Some(Match {
            rule_index,
            rule: &self.rules[rule_index],
            bucket,
        })
    }

    /// [`Domain::matches`] without allocating, for deciding: the rule's index,
    /// with the bucket's values (the request's own, or a `share_threshold`
    /// pattern, borrowed from the domain) in `values`. `None` also when the
    /// path is deeper than `values` holds (a [`DomainTree`] has no such rule).
    pub(crate) fn match_values<'a>(
        &'a self,
        descriptor: &[(&'a str, &'a str)],
        values: &mut crate::chain::BucketValues<'a>,
    ) -> Option<usize> {
        values.clear();
        self.walk(descriptor, |_, value| {
            let room = values.len() < MAX_BY_KEYS;
            if room {
                values.push(value);
            }
            room
        })
    }

    /// The search of [`Domain::matches`]: `visit` is given each entry's key
    /// and bucket value as it lands (and may stop the search by returning
    /// false); returns the rule's index.
    fn walk<'a>(
        &'a self,
        descriptor: &[(&'a str, &'a str)],
        mut visit: impl FnMut(&'a str, &'a str) -> bool,
    ) -> Option<usize> {
        let mut level = &self.root;
        let mut found = None;
        for (i, &(key, value)) in descriptor.iter().enumerate() {
            let entries = level.by_key.get(key)?;
            let id = entries
                .exact
                .get(value)
                .copied()
                .or_else(|| {
                    entries
                        .wildcards
                        .iter()
                        .find(|(p, _)| p.matches(value))
                        .map(|&(_, id)| id)
                })
                .or(entries.key_only)?;
            let node = &self.nodes[id];
            let bucket_value = node.shared_pattern.as_deref().unwrap_or(value);
            if !visit(key, bucket_value) {
                return None;
            }
            if i + 1 == descriptor.len() {
                found = node.rule;
            } else if node.children.by_key.is_empty() {
                return None;
            }
            level = &node.children;
        }
        found
    }

    /// Matches every descriptor of one request ([`Domain::matches`]) and then
    /// applies `replaces` across them, as envoyproxy/ratelimit does: the names
    /// every matched rule replaces (unlimited ones included) are collected, and
    /// each matched counted (or blocking) rule whose YAML `name` is among them is
    /// dropped — that descriptor is `OK` without a limit, and its bucket is not
    /// touched. Unlimited matches are never dropped (they are `OK` anyway). The
    /// result has one entry per descriptor, in order.
    pub fn match_request(&self, descriptors: &[&[(&str, &str)]]) -> Vec<Option<Match<'_>>> {
        let mut matches: Vec<Option<Match<'_>>> =
            descriptors.iter().map(|d| self.matches(d)).collect();
        apply_replaces(&mut matches);
        matches
    }
}

/// `replaces` over the matches of one request (see [`Domain::match_request`]).
pub fn apply_replaces(matches: &mut [Option<Match<'_>>]) {
    let replaced = replaced_names(matches.iter().flatten().map(|m| m.rule));
    if replaced.is_empty() {
        return;
    }
    for slot in matches.iter_mut() {
        if slot
            .as_ref()
            .is_some_and(|m| is_replaced(m.rule, &replaced))
        {
            *slot = None;
        }
    }
}

/// The names every rule of `matched` (one request's matched rules, unlimited
/// ones included) replaces.
pub(crate) fn replaced_names<'a>(matched: impl Iterator<Item = &'a Rule>) -> Vec<&'a str> {
    matched
        .flat_map(|rule| rule.replaces.iter().map(String::as_str))
        .collect()
}

/// Whether a matched `rule` is dropped by the request's `replaced` names:
/// counted and blocking rules are; unlimited ones never (they are `OK` anyway).
pub(crate) fn is_replaced(rule: &Rule, replaced: &[&str]) -> bool {
    !rule.unlimited()
        && rule
            .yaml_name
            .as_deref()
            .is_some_and(|n| replaced.contains(&n))
}
