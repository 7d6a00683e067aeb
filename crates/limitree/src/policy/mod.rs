//! The policy: which limits hold, in which order, for which requests.
//!
//! A [`Policy`] is a set of [`Tree`]s. A tree is an ordered list of [`Level`]s,
//! root first; a level's `by` keys pick its bucket from a request's descriptors.
//! Policies are built from TOML ([`Policy::from_toml_str`]) or in code, and are
//! always validated: a `Policy` value never holds a contradiction (zero limit,
//! burst on a non-gcra level, duplicate names, …).

mod duration;
pub mod envoy;
mod error;
mod parse;
mod shares;

pub use duration::{DisplayDuration, format_duration, parse_duration};
pub use error::{
    MAX_ECHO, PolicyError, PolicyErrors, Step, TomlDocument, closest, cut, line_col, render_path,
    utf8_text,
};
pub use shares::{SharePart, Shares};

use std::fmt;

use crate::clock::Micros;
use crate::values::ValuesIndex;

/// At most this many buckets in one chain: a chain is decided under one lock set
/// (or one Redis script), and is carried on the stack. A native (TOML) tree has
/// at most this many levels, since one request may pass all of them; an
/// envoyproxy/ratelimit domain may have any number of rules (levels), and a
/// call whose descriptors match more than this many buckets is a
/// [`ChainError::TooManyBuckets`](crate::ChainError::TooManyBuckets).
pub const MAX_LEVELS: usize = 8;
/// At most this many `by` keys on one level (for an envoyproxy/ratelimit rule:
/// entries on its descriptor path; deeper rules are refused when the domain
/// becomes a tree).
pub const MAX_BY_KEYS: usize = 8;
/// The largest `limit`, `burst` or request `cost`: large enough for byte budgets,
/// small enough that every product the algorithms form stays exact in a Lua number.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// Shortest and longest window.
pub const MIN_WINDOW: Micros = 1_000;
/// One year.
pub const MAX_WINDOW: Micros = 366 * 24 * 3600 * 1_000_000;
/// Default cap on distinct buckets of one keyed level.
pub const DEFAULT_MAX_BUCKETS: usize = 10_000;
/// `config check` warns when a sliding_log level may hold more entries than this
/// per bucket: its state is O(limit).
pub const SLIDING_LOG_WARN_LIMIT: u64 = 10_000;

/// How a level counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Exact rolling window: one log entry per admission, O(limit) state.
    SlidingLog,
    /// Rolling-window approximation from two fixed-window counters, O(1) state.
    SlidingWindow,
    /// Generic cell rate algorithm (a token bucket) with a `burst`, O(1) state.
    Gcra,
    /// Epoch-aligned fixed windows, O(1) state.
    FixedWindow,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
    ];

    /// The name used in config files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed_window",
        }
    }

    /// Parses a config name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one bucket may hold: the numbers an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    /// How the bucket counts.
    pub algorithm: Algorithm,
    /// Units admitted per `window`.
    pub limit: u64,
    /// The window, in microseconds.
    pub window: Micros,
    /// gcra only: units that may be taken at once (the bucket depth). Equal to
    /// `limit` for every other algorithm.
    pub burst: u64,
    /// [`LimitSpec::emission_interval`], computed once: a 64-bit division
    /// costs more than the rest of a gcra decision, which needs it several
    /// times per bucket. Private, so every spec is made by [`LimitSpec::new`]
    /// and the fields it is computed from are never changed under it.
    interval: Micros,
}

impl LimitSpec {
    /// The spec of `limit` units per `window` (µs), `burst` at once (gcra;
    /// pass `limit` for the other algorithms).
    pub const fn new(algorithm: Algorithm, limit: u64, window: Micros, burst: u64) -> Self {
        let limit_or_1 = if limit == 0 { 1 } else { limit };
        LimitSpec {
            algorithm,
            limit,
            window,
            burst,
            interval: window.div_ceil(limit_or_1),
        }
    }

    /// The most a single request may cost and still fit some day; a larger cost
    /// is `insufficient_capacity`.
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra => self.burst,
            _ => self.limit,
        }
    }

    /// gcra's emission interval: the time one unit takes to drip back, rounded
    /// **up** to the microsecond so the rate is never above `limit / window`.
    #[inline]
    pub fn emission_interval(&self) -> Micros {
        self.interval
    }
}

/// A per-value limit on a keyed level: buckets whose values equal `values`
/// (in the level's `by` order) use `spec` instead of the level's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The descriptor values, one per `by` key, in `by` order.
    pub values: Vec<String>,
    /// The limit those buckets hold.
    pub spec: LimitSpec,
    /// Units per window of the parent level guaranteed to these values (fair
    /// sharing, see [`Shares`]); `spec` stays their ceiling.
    pub guaranteed: Option<u64>,
}

/// One level of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// Unique within the tree.
    pub name: String,
    /// Descriptor keys whose values pick the bucket; empty: one bucket for the tree.
    pub by: Vec<String>,
    /// The limit every bucket of this level holds unless overridden.
    pub spec: LimitSpec,
    /// Per-value limits.
    pub overrides: Vec<Override>,
    /// A shadow level is counted and reported but never denies.
    pub shadow: bool,
    /// When false, a request that lacks one of the `by` descriptors skips this
    /// level instead of being rejected.
    pub required: bool,
    /// Cap on distinct buckets in one store (keyed levels). Values seen past the
    /// cap share one overflow bucket; see the README.
    pub max_buckets: usize,
    /// Metrics keep this level's descriptor values (`detailed = true` in TOML,
    /// `detailed_metric` in envoyproxy/ratelimit YAML). Only the server reads it;
    /// it caps how many distinct values get a series of their own.
    pub detailed: bool,
    /// Where each of `overrides` stands, by its values (built with the
    /// level: a policy hands out its levels by shared reference, so
    /// `overrides` does not change after).
    pub(crate) override_index: ValuesIndex,
}

impl Level {
    /// The spec for the bucket picked by `values` (overrides first).
    pub fn spec_for(&self, values: &[&str]) -> &LimitSpec {
        self.override_for(values).unwrap_or(&self.spec)
    }

    /// The override matching `values`, if any.
    pub fn override_for(&self, values: &[&str]) -> Option<&LimitSpec> {
        if self.overrides.is_empty() {
            return None;
        }
        let at = self
            .override_index
            .find(values, self.overrides.iter().map(|o| o.values.as_slice()))?;
        Some(&self.overrides[at].spec)
    }

    /// Whether this level has one bucket for the whole tree.
    pub fn is_global(&self) -> bool {
        self.by.is_empty()
    }
}

/// A named, ordered list of levels, root first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Unique within the policy; also the Redis hash tag.
    pub name: String,
    /// Root first. Never empty for a native tree; an envoyproxy/ratelimit
    /// domain has one level per counted rule (possibly none).
    pub levels: Vec<Level>,
    /// Position in [`Policy::trees`]: stores index their state by it.
    pub index: usize,
    /// How a request's descriptors select the tree's buckets.
    pub selection: Selection,
    /// The guaranteed shares levels give of their parents' limits, root
    /// first, at most one per parent level (native trees only; empty
    /// otherwise). A level in the middle of two splits is a child of the one
    /// above it and the parent of the one below it.
    pub shares: Vec<Shares>,
}

/// How a request's descriptors select a tree's buckets (its chain).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// limitree's own trees (TOML): the descriptors are one map, and the chain
    /// holds the bucket of every level whose `by` keys the map gives
    /// ([`Tree::chain`]).
    #[default]
    Native,
    /// An envoyproxy/ratelimit domain: each request descriptor (an ordered
    /// list of entries) matches at most one rule, and the chain holds the
    /// bucket of every matched rule's level
    /// ([`Tree::chain_for_descriptors`]).
    Envoy(std::sync::Arc<envoy::DomainTree>),
}

impl Tree {
    /// The split of level `index`'s buckets (fair sharing: it is a parent),
    /// if any.
    pub fn split_of(&self, index: usize) -> Option<&Shares> {
        self.shares.iter().find(|s| s.parent == index)
    }

    /// The envoyproxy/ratelimit domain this tree was built from, if any.
    pub fn envoy(&self) -> Option<&envoy::DomainTree> {
        match &self.selection {
            Selection::Native => None,
            Selection::Envoy(domain) => Some(domain),
        }
    }
}

/// A validated set of trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    trees: Vec<Tree>,
    warnings: Vec<String>,
}

impl Policy {
    /// The built-in policy `limitree serve` runs without a config file: tree
    /// `notifications`, level `global` 100 per 30m, level `category` by `category`
    /// 10 per 30m, both sliding_log.
    pub fn default_notifications() -> Policy {
        const DEFAULT: &str = r#"
[[trees]]
name = "notifications"

[[trees.levels]]
name = "global"
limit = 100
window = "30m"
algorithm = "sliding_log"

[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "30m"
algorithm = "sliding_log"
"#;
        match Policy::from_toml_str(DEFAULT, "<built-in default policy>") {
            Ok(policy) => policy,
            // The text above is a constant checked by a unit test.
            Err(e) => unreachable!("the built-in policy is invalid: {e}"),
        }
    }

    /// Parses and validates a policy document. `source` names the file in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Policy, PolicyErrors> {
        parse::parse_document(text, source)
    }

    /// Builds a policy from already-parsed `[[trees]]` tables (the server's config
    /// file holds other sections too).
    pub fn from_toml_trees(trees: toml::Value, source: &str) -> Result<Policy, PolicyErrors> {
        parse::parse_trees_value(trees, source)
    }

    /// Builds a policy from the `[[trees]]` of a parsed document (the
    /// server's config file holds other sections too); errors name the line,
    /// column and key path.
    pub fn from_document(doc: &TomlDocument<'_>) -> Result<Policy, PolicyErrors> {
        parse::parse_trees_of(doc)
    }

    /// Builds a policy from envoyproxy/ratelimit domains (see
    /// [`envoy::EnvoyConfig::from_yaml_files`]): each domain becomes a tree
    /// named after it, each counted rule a level (see [`envoy::DomainTree`]).
    pub fn from_envoy_domains(domains: Vec<envoy::Domain>) -> Result<Policy, PolicyErrors> {
        envoy::tree::policy_from_domains(domains)
    }

    pub(crate) fn from_parts(trees: Vec<Tree>, warnings: Vec<String>) -> Policy {
        Policy { trees, warnings }
    }

    /// All trees, in file order.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// The tree called `name`.
    pub fn tree(&self, name: &str) -> Option<&Tree> {
        self.trees.iter().find(|t| t.name == name)
    }

    /// Things that are legal but probably not meant (e.g. a huge sliding_log).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}
