//! A reload that changes a fair-sharing split, on Redis: the new layout's
//! parts (or the whole bucket) are seeded from the old layout's keys by the
//! decision script, at the first decision on each parent bucket after the
//! reload, so the parent never admits more than its limit in the window of
//! the reload (the memory store carries at the reload itself, see
//! [`crate::algo::carry`]; both fill the pool first, then the guarantees).
//!
//! Redis keeps no record of policies, so the store learns the old layout
//! from [`Store::for_policy`](crate::Store::for_policy): per tree whose
//! split changed, a [`CarryPlan`]. While it lasts, each decision of that tree
//! on the new layout carries a [`CarryArg`]: the old layout's keys (the
//! sources), the new layout's (the targets, in fill order) and a marker key
//! (`<parent bucket key>:layout`) holding the new layout's signature, which
//! the script sets after carrying, so each parent bucket is carried once —
//! also when several instances reload, or a later decision of this one runs.
//! The plan lasts the old layout's horizon (the longest a state of its
//! algorithm and window can stay live, measured from the first carry's
//! Redis time), after which the old keys hold nothing any more.

use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashMap;

use crate::chain::Chain;
use crate::clock::Micros;
use crate::policy::{Algorithm, LimitSpec, Policy, Shares};
use crate::store::memory::keeps_state;

/// The carries of one reload: per tree name, one per split level.
#[derive(Debug, Default)]
pub(super) struct CarryPlans {
    trees: HashMap<String, Vec<CarryPlan>>,
}

/// One split level's carry: its layout before and after.
#[derive(Debug)]
pub(super) struct CarryPlan {
    /// Index of the parent level in the new policy's tree.
    parent: usize,
    /// The old layout's split (`None`: the parent was a whole bucket).
    old: Option<Shares>,
    /// The new layout's signature (see [`signature`]).
    signature: String,
    /// How long after the first carry old-layout keys can still hold state,
    /// and how long the marker lives (twice that), in µs.
    horizon: Micros,
    /// Redis time after which no decision needs the carry any more
    /// (`u64::MAX` until the first carrying decision's reply).
    until: AtomicU64,
    /// Redis time of the latest carrying decision's reply.
    last_now: AtomicU64,
}

/// What a carrying decision sends the script for its parent bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CarryArg {
    /// `<parent bucket key>:layout`.
    pub marker: String,
    /// The new layout's signature.
    pub signature: String,
    /// The marker's time to live, in ms.
    pub marker_ttl_ms: u64,
    /// The new layout's keys in fill order (the pool or the whole bucket,
    /// then the guarantees), each with its spec.
    pub targets: Vec<(String, LimitSpec)>,
    /// The old layout's keys (the pool or the whole bucket first), each with
    /// the spec it is read under: a target's own when it is one too (the
    /// same key has one spec per call), else the first target's (the same
    /// algorithm and window: what the memory store reads it under).
    pub sources: Vec<(String, LimitSpec)>,
}

/// A layout as the marker names it: `whole`, or the pool's limit and each
/// guaranteed value with its share, in order (length-prefixed, so no two
/// layouts read alike), hashed (FNV-1a, 64 bits) to keep the marker short.
fn signature(split: Option<&Shares>) -> String {
    let Some(split) = split else {
        return "whole".to_owned();
    };
    let mut text = format!("pool={}", split.pool.limit);
    for part in &split.parts {
        for value in &part.values {
            text.push_str(&format!("|{}:{value}", value.len()));
        }
        text.push_str(&format!("={}", part.guaranteed));
    }
    // A keyed parent's buckets split otherwise, with their values.
    for (values, own) in &split.per_bucket {
        text.push_str(&format!(";{}", values.join("\u{1f}")));
        text.push_str(&signature(Some(own)));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("split:{hash:016x}")
}

/// How long a state of `spec` stays live after its last charge, at most.
fn horizon_of(spec: &LimitSpec) -> Micros {
    match spec.algorithm {
        Algorithm::SlidingWindow => spec.window.saturating_mul(2),
        Algorithm::Gcra => spec
            .burst
            .max(spec.limit)
            .saturating_mul(spec.emission_interval())
            .max(spec.window),
        Algorithm::SlidingLog | Algorithm::FixedWindow => spec.window,
    }
}

impl CarryPlans {
    /// The carries a reload from `old` to `new` needs: every tree of both
    /// whose split level keeps its state ([`keeps_state`]) but whose split
    /// changed. `None` when there is none.
    pub(super) fn between(old: &Policy, new: &Policy) -> Option<CarryPlans> {
        let mut plans = CarryPlans::default();
        for tree in new.trees() {
            let Some(before) = old.tree(&tree.name) else {
                continue;
            };
            let mut tree_plans = Vec::new();
            for (new_index, level) in tree.levels.iter().enumerate() {
                // The same level before (found by name), if it keeps its state.
                let Some(old_index) = before
                    .levels
                    .iter()
                    .position(|l| l.name == level.name && keeps_state(l, level))
                else {
                    continue;
                };
                let old_split = before.split_of(old_index);
                let new_split = tree.split_of(new_index);
                let signature_new = signature(new_split);
                if signature(old_split) == signature_new {
                    continue;
                }
                let horizon =
                    horizon_of(&before.levels[old_index].spec).max(horizon_of(&level.spec));
                tree_plans.push(CarryPlan {
                    parent: new_index,
                    old: old_split.cloned(),
                    signature: signature_new,
                    horizon,
                    until: AtomicU64::new(u64::MAX),
                    last_now: AtomicU64::new(0),
                });
            }
            if !tree_plans.is_empty() {
                plans.trees.insert(tree.name.clone(), tree_plans);
            }
        }
        (!plans.trees.is_empty()).then_some(plans)
    }

    /// The carries `chain` (of the new policy) sends: one per plan of its
    /// tree that still lasts and whose level the chain passes, each with
    /// the plan's index (for [`CarryPlans::answered`]).
    pub(super) fn args_for(&self, key_prefix: &str, chain: &Chain<'_>) -> Vec<(usize, CarryArg)> {
        let Some(plans) = self.trees.get(&chain.tree.name) else {
            return Vec::new();
        };
        plans
            .iter()
            .enumerate()
            .filter_map(|(i, plan)| Some((i, plan.arg_for(key_prefix, chain)?)))
            .collect()
    }

    /// Decisions of `tree` that carried the plans `carried` were answered
    /// at Redis time `now`: the first answer starts each plan's horizon.
    pub(super) fn answered(&self, tree: &str, carried: &[usize], now: Micros) {
        let Some(plans) = self.trees.get(tree) else {
            return;
        };
        for plan in carried.iter().filter_map(|&i| plans.get(i)) {
            let _ = plan.until.compare_exchange(
                u64::MAX,
                now.saturating_add(plan.horizon),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            plan.last_now.fetch_max(now, Ordering::Relaxed);
        }
    }
}

impl CarryPlan {
    /// The carry `chain` sends for this plan's level, if the plan still
    /// lasts and the chain passes the level.
    fn arg_for(&self, key_prefix: &str, chain: &Chain<'_>) -> Option<CarryArg> {
        let plan = self;
        if plan.last_now.load(Ordering::Relaxed) >= plan.until.load(Ordering::Relaxed) {
            return None;
        }
        // A decision of another policy (a reload after this one's, in
        // flight) has another layout: nothing to carry for it.
        let split = chain.tree.split_of(plan.parent);
        if signature(split) != plan.signature {
            return None;
        }
        let bucket = chain
            .buckets
            .iter()
            .find(|b| b.level_index == plan.parent)?;
        let tree = &chain.tree.name;
        // The parts' specs are the bucket's own split's (an overridden
        // bucket's, see `Shares::for_values`); only the old layout's keys
        // (its values) matter.
        let split = split.map(|s| s.for_values(&bucket.values));
        let parts = |split: &Shares, with_pool: bool| -> Vec<(String, LimitSpec)> {
            let mut keys = Vec::with_capacity(split.parts.len() + 1);
            if with_pool {
                let mut key = String::new();
                super::keys::push_pool_key(&mut key, key_prefix, tree, bucket);
                keys.push((key, split.pool));
            }
            for part in &split.parts {
                let mut key = String::new();
                super::keys::push_guarantee_key(&mut key, key_prefix, tree, bucket, &part.values);
                keys.push((key, part.spec));
            }
            keys
        };
        let whole = || {
            vec![(
                super::keys::bucket_key(key_prefix, tree, bucket),
                *bucket.spec,
            )]
        };
        let targets = match split {
            Some(split) => parts(split, true),
            None => whole(),
        };
        let read = targets[0].1;
        let sources = match &plan.old {
            Some(old) => parts(old.for_values(&bucket.values), true),
            None => whole(),
        }
        .into_iter()
        .map(|(key, _)| {
            let spec = targets
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(read, |(_, spec)| *spec);
            (key, spec)
        })
        .collect();
        let mut marker = super::keys::bucket_key(key_prefix, tree, bucket);
        marker.push_str(":layout");
        Some(CarryArg {
            marker,
            signature: plan.signature.clone(),
            marker_ttl_ms: plan.horizon.saturating_mul(2).div_ceil(1000),
            targets,
            sources,
        })
    }
}
