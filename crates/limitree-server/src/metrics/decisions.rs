//! Every decision the limiter makes, whichever endpoint asked: a store
//! wrapper ([`CountedStore`]) sees each chain, its mode and the store's
//! outcome — what no single handler sees — so HTTP checks, notifications, gRPC
//! and `POST /json` are counted alike, in one place.
//!
//! Families (all counters):
//! - `limitree_decisions_total{tree,reason}`: committed decisions (cost > 0,
//!   not a dry run).
//! - `limitree_level_decisions_total{tree,level,outcome}`: per level of each
//!   committed decision, `allowed` (had room), `denied` (had none: this is the
//!   level that denied) or `shadow_denied` (a shadow level that would have).
//! - `limitree_level_near_limit_total{tree,level}`: admitted commits that left
//!   the level's bucket at least `near_limit_ratio` full.
//! - `limitree_level_overflow_total{tree,level}`: requests (any mode) that
//!   landed in the level's overflow bucket (its `max_buckets` cap was reached).
//! - `limitree_peeks_total{tree}`, `limitree_dry_runs_total{tree,reason}`:
//!   cost-0 checks and dry runs, counted apart from decisions.
//! - `limitree_level_value_decisions_total{tree,level,value,outcome}`: the
//!   same as the level family, per descriptor value, for `detailed` levels
//!   only; at most `max_values` values per level, the rest as `__other__`.
//!
//! The series of the policy's trees and levels are made at start and kept in
//! a vector indexed as the policy is, so recording is a few atomic adds. A
//! tree the start-up policy did not have (a reloaded policy) is resolved once
//! by name and kept too.

use std::collections::HashMap;
use std::sync::Arc;

use limitree::policy::{Level, Tree};
use limitree::store::BoxFuture;
use limitree::{Chain, ChainOutcome, Mode, Policy, Reason, Store, StoreError};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;

use super::{Counter, Family, Metrics};

/// Every reason, in the order series are kept.
pub const REASONS: [Reason; 5] = [
    Reason::Ok,
    Reason::Limited,
    Reason::InsufficientCapacity,
    Reason::StoreUnavailable,
    Reason::Shadow,
];

/// A level's part in a decision, as the `outcome` label names it.
const OUTCOMES: [&str; 3] = ["allowed", "denied", "shadow_denied"];

/// The value label of every value past a detailed level's cap.
pub const OTHER_VALUE: &str = "__other__";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TreeLabels {
    tree: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TreeReasonLabels {
    tree: Arc<str>,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    tree: Arc<str>,
    level: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelOutcomeLabels {
    tree: Arc<str>,
    level: Arc<str>,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValueLabels {
    tree: Arc<str>,
    level: Arc<str>,
    value: Arc<str>,
    outcome: &'static str,
}

/// The registered families; series are taken from them once per tree.
#[derive(Debug)]
struct Families {
    decisions: Family<TreeReasonLabels, Counter>,
    dry_runs: Family<TreeReasonLabels, Counter>,
    peeks: Family<TreeLabels, Counter>,
    levels: Family<LevelOutcomeLabels, Counter>,
    near_limit: Family<LevelLabels, Counter>,
    overflow: Family<LevelLabels, Counter>,
    values: Family<ValueLabels, Counter>,
}

/// How decisions are counted; shared by the [`CountedStore`].
#[derive(Debug)]
pub struct DecisionMetrics {
    families: Families,
    /// Per tree of the start-up policy, in policy order.
    trees: Vec<TreeSeries>,
    /// Trees met later (after a reload), by name.
    later: Mutex<Vec<Arc<TreeSeries>>>,
    near_limit_ratio: f64,
    max_values: usize,
}

/// One tree's series.
#[derive(Debug)]
struct TreeSeries {
    name: Arc<str>,
    decisions: [Counter; REASONS.len()],
    dry_runs: [Counter; REASONS.len()],
    peeks: Counter,
    levels: Vec<LevelSeries>,
}

/// One level's series.
#[derive(Debug)]
struct LevelSeries {
    name: Arc<str>,
    outcomes: [Counter; OUTCOMES.len()],
    near_limit: Counter,
    overflow: Counter,
    /// For a `detailed` level: its per-value series.
    values: Option<Mutex<Values>>,
}

/// A detailed level's per-value series, at most `max_values` plus `__other__`.
#[derive(Debug)]
struct Values {
    tree: Arc<str>,
    level: Arc<str>,
    seen: HashMap<Box<str>, [Counter; OUTCOMES.len()]>,
    other: Option<[Counter; OUTCOMES.len()]>,
}

impl DecisionMetrics {
    /// Registers the decision families in `metrics`, with zeroed series for
    /// every tree and level of `policy`. `near_limit_ratio` is in (0, 1];
    /// `max_values` caps each detailed level's distinct values.
    pub fn new(
        metrics: &Metrics,
        policy: &Policy,
        near_limit_ratio: f64,
        max_values: usize,
    ) -> DecisionMetrics {
        let families = Families {
            decisions: metrics.register(
                "limitree_decisions",
                "Committed decisions (not peeks or dry runs) from every endpoint, by tree and reason.",
                Family::default(),
            ),
            dry_runs: metrics.register(
                "limitree_dry_runs",
                "Dry runs (answered, nothing recorded), by tree and reason.",
                Family::default(),
            ),
            peeks: metrics.register(
                "limitree_peeks",
                "Cost-0 checks (state reported, nothing consumed), by tree.",
                Family::default(),
            ),
            levels: metrics.register(
                "limitree_level_decisions",
                "Each level's part in committed decisions: allowed, denied (this level denied) or shadow_denied.",
                Family::default(),
            ),
            near_limit: metrics.register(
                "limitree_level_near_limit",
                "Admitted decisions that left the level's bucket at least near_limit_ratio full.",
                Family::default(),
            ),
            overflow: metrics.register(
                "limitree_level_overflow",
                "Requests that landed in the level's overflow bucket (its max_buckets cap was reached).",
                Family::default(),
            ),
            values: metrics.register(
                "limitree_level_value_decisions",
                "Per descriptor value of a detailed level: its part in committed decisions (values past the cap: __other__).",
                Family::default(),
            ),
        };
        let trees = policy
            .trees()
            .iter()
            .map(|tree| TreeSeries::new(&families, tree))
            .collect();
        DecisionMetrics {
            families,
            trees,
            later: Mutex::default(),
            near_limit_ratio,
            max_values,
        }
    }

    /// Counts `outcome`, the store's answer for `chain` in `mode`.
    pub fn record(&self, chain: &Chain<'_>, mode: Mode, outcome: &ChainOutcome) {
        if let Some(series) = self.trees.get(chain.tree.index)
            && series.matches(chain.tree)
        {
            return self.record_in(series, chain, mode, outcome);
        }
        let series = self.later(chain.tree);
        self.record_in(&series, chain, mode, outcome);
    }

    fn record_in(
        &self,
        series: &TreeSeries,
        chain: &Chain<'_>,
        mode: Mode,
        outcome: &ChainOutcome,
    ) {
        let reason = reason_index(outcome.reason);
        let counter = match mode {
            Mode::Peek => &series.peeks,
            Mode::DryRun => &series.dry_runs[reason],
            Mode::Commit => &series.decisions[reason],
        };
        counter.inc();
        for (bucket, level) in chain.buckets.iter().zip(&outcome.levels) {
            let Some(level_series) = series.levels.get(bucket.level_index) else {
                continue;
            };
            if level.overflow {
                level_series.overflow.inc();
            }
            if mode != Mode::Commit {
                continue;
            }
            let verdict = usize::from(!level.allowed) * (1 + usize::from(level.shadow));
            level_series.outcomes[verdict].inc();
            let charged = outcome.allowed && level.allowed && bucket.cost > 0;
            if charged && near_limit(level.limit, level.remaining, self.near_limit_ratio) {
                level_series.near_limit.inc();
            }
            if let Some(values) = &level_series.values {
                values
                    .lock()
                    .counters(&self.families, &bucket.values, self.max_values)[verdict]
                    .inc();
            }
        }
    }

    /// Makes the series of every tree of `policy` (a reloaded one) that the
    /// start-up policy did not have in the same shape.
    pub fn track(&self, policy: &Policy) {
        for tree in policy.trees() {
            if !self.trees.get(tree.index).is_some_and(|s| s.matches(tree)) {
                drop(self.later(tree));
            }
        }
    }

    /// The series of a tree the start-up policy did not have, by name.
    fn later(&self, tree: &Tree) -> Arc<TreeSeries> {
        let mut later = self.later.lock();
        if let Some(series) = later.iter().find(|s| s.matches(tree)) {
            return Arc::clone(series);
        }
        let series = Arc::new(TreeSeries::new(&self.families, tree));
        later.push(Arc::clone(&series));
        series
    }
}

/// Whether `remaining` of `limit` left after an admitted request is within
/// `ratio` of the limit (envoyproxy/ratelimit's near-limit: the used part is
/// at least `ratio × limit`).
fn near_limit(limit: u64, remaining: u64, ratio: f64) -> bool {
    let used = limit.saturating_sub(remaining);
    // Exact for any limit up to 2^53; limits are far below.
    limit > 0 && used as f64 >= ratio * limit as f64
}

fn reason_index(reason: Reason) -> usize {
    REASONS.iter().position(|r| *r == reason).unwrap_or(0)
}

impl TreeSeries {
    fn new(families: &Families, tree: &Tree) -> TreeSeries {
        let name: Arc<str> = Arc::from(tree.name.as_str());
        let by_reason = |family: &Family<TreeReasonLabels, Counter>| {
            REASONS.map(|r| {
                family.get_or_create_owned(&TreeReasonLabels {
                    tree: Arc::clone(&name),
                    reason: r.as_str(),
                })
            })
        };
        TreeSeries {
            decisions: by_reason(&families.decisions),
            dry_runs: by_reason(&families.dry_runs),
            peeks: families.peeks.get_or_create_owned(&TreeLabels {
                tree: Arc::clone(&name),
            }),
            levels: tree
                .levels
                .iter()
                .map(|level| LevelSeries::new(families, &name, level))
                .collect(),
            name,
        }
    }

    /// Whether these series were made for `tree` (same name, same levels).
    fn matches(&self, tree: &Tree) -> bool {
        *self.name == *tree.name
            && self.levels.len() == tree.levels.len()
            && self
                .levels
                .iter()
                .zip(&tree.levels)
                .all(|(series, level)| *series.name == *level.name)
    }
}

impl LevelSeries {
    fn new(families: &Families, tree: &Arc<str>, level: &Level) -> LevelSeries {
        let name: Arc<str> = Arc::from(level.name.as_str());
        let labels = LevelLabels {
            tree: Arc::clone(tree),
            level: Arc::clone(&name),
        };
        LevelSeries {
            outcomes: OUTCOMES.map(|outcome| {
                families.levels.get_or_create_owned(&LevelOutcomeLabels {
                    tree: Arc::clone(tree),
                    level: Arc::clone(&name),
                    outcome,
                })
            }),
            near_limit: families.near_limit.get_or_create_owned(&labels),
            overflow: families.overflow.get_or_create_owned(&labels),
            values: level.detailed.then(|| {
                Mutex::new(Values {
                    tree: Arc::clone(tree),
                    level: Arc::clone(&name),
                    seen: HashMap::new(),
                    other: None,
                })
            }),
            name,
        }
    }
}

impl Values {
    /// The outcome counters of the bucket with `values` (joined with `,` for
    /// a level keyed by several descriptors), or of `__other__` once
    /// `max_values` distinct values have their own.
    fn counters(
        &mut self,
        families: &Families,
        values: &[&str],
        max_values: usize,
    ) -> &[Counter; OUTCOMES.len()] {
        let value = values.join(",");
        if !self.seen.contains_key(value.as_str()) && self.seen.len() >= max_values {
            let (tree, level) = (&self.tree, &self.level);
            return self
                .other
                .get_or_insert_with(|| series(families, tree, level, OTHER_VALUE));
        }
        let (tree, level) = (&self.tree, &self.level);
        self.seen
            .entry(value.into_boxed_str())
            .or_insert_with_key(|value| series(families, tree, level, value))
    }
}

fn series(
    families: &Families,
    tree: &Arc<str>,
    level: &Arc<str>,
    value: &str,
) -> [Counter; OUTCOMES.len()] {
    let value: Arc<str> = Arc::from(value);
    OUTCOMES.map(|outcome| {
        families.values.get_or_create_owned(&ValueLabels {
            tree: Arc::clone(tree),
            level: Arc::clone(level),
            value: Arc::clone(&value),
            outcome,
        })
    })
}

/// The limiter's store, with every decision it makes counted.
#[derive(Debug)]
pub struct CountedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<DecisionMetrics>,
}

impl CountedStore {
    /// `inner`, counted into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<DecisionMetrics>) -> CountedStore {
        CountedStore { inner, metrics }
    }
}

impl Store for CountedStore {
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(async move {
            let outcome = self.inner.decide(chain, mode).await?;
            self.metrics.record(chain, mode, &outcome);
            Ok(outcome)
        })
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.check_ready()
    }

    fn expire_idle(&self) -> usize {
        self.inner.expire_idle()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn scan_buckets<'a>(
        &'a self,
        scan: limitree::store::BucketScan<'a>,
    ) -> BoxFuture<'a, Result<limitree::store::ScannedBuckets, StoreError>> {
        self.inner.scan_buckets(scan)
    }

    fn reset<'a>(&'a self, chain: &'a Chain<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        self.inner.reset(chain)
    }

    /// The store a reload installs ([`limitree::Limiter::reload`]), counted
    /// as this one; the new policy's trees and levels get their (zeroed)
    /// series now, so they show from the first scrape after the reload.
    /// Without a store of its own for `policy`, the limiter keeps this one,
    /// which then finds the new trees' series by name.
    fn for_policy(&self, old: &Policy, policy: &Policy) -> Option<Arc<dyn Store>> {
        self.metrics.track(policy);
        let inner = self.inner.for_policy(old, policy)?;
        Some(Arc::new(CountedStore {
            inner,
            metrics: Arc::clone(&self.metrics),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_limit_is_the_used_share_reaching_the_ratio() {
        // 10 per window at 0.8: 8 used is near, 7 is not.
        assert!(near_limit(10, 2, 0.8));
        assert!(!near_limit(10, 3, 0.8));
        assert!(near_limit(10, 0, 0.8));
        assert!(near_limit(1, 0, 1.0));
        assert!(!near_limit(0, 0, 0.8));
    }
}
