//! The in-process store: exact under concurrency, bounded in memory.
//!
//! # Atomicity
//! A decision locks the chain's buckets in level order (root first — the same
//! order for every request, so two decisions never wait on each other in a
//! cycle; buckets of one level, which an Envoy domain's chain may hold, by
//! address), evaluates every bucket for its own cost, and charges each its
//! cost only if every non-shadow bucket has room. Nothing is charged
//! otherwise. Two buckets of one level that land in its overflow bucket share
//! it: it is locked once and asked for both costs together.
//!
//! # Memory
//! A keyed level keeps its buckets in a map guarded by a `RwLock`: deciders hold
//! the read lock while they use a bucket, so a bucket is only ever removed (under
//! the write lock) when nobody is using it — a decision can never charge a bucket
//! that has just been dropped. Buckets whose state has expired are dropped by
//! [`MemoryStore::expire_idle`] (the server calls it periodically) and whenever a
//! level reaches its cap. A level holds at most `max_buckets` buckets: values first
//! seen past the cap (after idle ones are dropped) share one **overflow bucket**
//! with the level's limit, so a flood of new descriptor values cannot grow memory
//! and cannot get more than one bucket's worth of traffic through. Override values
//! always get their own bucket (their number is fixed by the policy).
//! A bucket split by fair sharing keeps its guarantees and pool with it (see
//! `BucketEntry`), so they are bounded, expired and evicted as the bucket is; values
//! past a split level's cap share the overflow bucket's parts.
//!
//! # Reload
//! A store is laid out for one policy (its trees and levels by index, so a
//! decision finds its buckets without comparing names). A reloaded policy
//! gets a new store from [`MemoryStore::for_new_policy`] that **shares** the
//! state of every level whose tree, level name, `by` keys and algorithm are
//! unchanged — the very same locks, so decisions still running on the old
//! store and new ones on the new store count in one place — and starts every
//! other level fresh. Levels the new policy no longer has are dropped with the
//! old store, once its last decision is done. A kept level whose fair-sharing
//! split changed gets new buckets holding the old ones' used units, carried
//! into the new layout at the reload ([`crate::algo::carry`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayVec;
use hashbrown::HashMap;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use super::{BoxFuture, BucketScan, ScannedBuckets, Store, StoreError};
use crate::algo::{self, BucketState};
use crate::chain::{Bucket, Chain};
use crate::clock::{Clock, Micros, SystemClock};
use crate::decision::{
    Admission, ChainOutcome, Mode, PartView, ShareVerdict, share_verdict, takes,
};
use crate::policy::{Level, LimitSpec, MAX_LEVELS, Policy, Shares};

/// A full level tries to drop idle buckets at most this often, so a flood of
/// new values against a level full of live buckets costs O(1) per request.
const FULL_LEVEL_EXPIRE_INTERVAL: Micros = 1_000_000;

/// A keyed bucket's identity, and a borrowed one for lookups without
/// allocating (see [`crate::values`]).
use crate::values::{ValuesKey as BucketKey, ValuesRef as KeyRef};

/// One bucket as the store holds it: the algorithm's state, and when the
/// bucket last admitted a charge (for the introspection API's "last
/// admission"; see [`LevelOutcome::since_admission`]). One [`Micros`] more per
/// bucket: `0` (the epoch, which no running clock reads) means none yet.
#[derive(Debug, Clone)]
struct BucketCell {
    state: BucketState,
    last_admission: Micros,
}

impl BucketCell {
    fn fresh(algorithm: crate::policy::Algorithm) -> Self {
        BucketCell {
            state: BucketState::fresh(algorithm),
            last_admission: 0,
        }
    }

    /// Records `cost` units taken at `now`.
    fn charge(&mut self, now: Micros, spec: &crate::policy::LimitSpec, cost: u64) {
        algo::charge(&mut self.state, now, spec, cost);
        self.admitted(now);
    }

    /// Records an admission at `now` (without units: a shared parent's pool
    /// when the request's guarantee gave them all).
    fn admitted(&mut self, now: Micros) {
        // `max(1)`: a clock standing at the epoch (a test's) still records it.
        self.last_admission = now.max(1);
    }

    /// The last admission, if any.
    fn last_admission(&self) -> Option<Micros> {
        (self.last_admission != 0).then_some(self.last_admission)
    }
}

type BucketMap = HashMap<BucketKey, BucketEntry>;

/// One bucket's state. A bucket of a level split by fair sharing
/// ([`crate::policy::Shares`]) has no state of its own: `state` is its pool
/// and `parts` its guarantees, one per [`Shares::parts`] in order. They live
/// with the bucket, so each bucket of a keyed parent (each team) has its own
/// guarantees and pool, and they are created, expired, evicted and counted
/// against `max_buckets` with it: memory stays bounded by
/// `max_buckets × (guarantees + 1)` per level.
#[derive(Debug)]
struct BucketEntry {
    /// The bucket's state, or a split bucket's pool.
    state: Mutex<BucketCell>,
    /// A split bucket's guarantees; empty otherwise (no allocation).
    parts: Box<[Mutex<BucketCell>]>,
}

impl BucketEntry {
    fn fresh(algorithm: crate::policy::Algorithm, split: Option<&Shares>) -> BucketEntry {
        let parts = split.map_or(0, |s| s.parts.len());
        BucketEntry {
            state: Mutex::new(BucketCell::fresh(algorithm)),
            parts: (0..parts)
                .map(|_| Mutex::new(BucketCell::fresh(algorithm)))
                .collect(),
        }
    }

    /// When every state of the cell is idle: `spec` is the bucket's own (read
    /// only when it is not split).
    fn idle_at(&mut self, spec: &LimitSpec, split: Option<&Shares>) -> Micros {
        let state_spec = split.map_or(spec, |s| &s.pool);
        let mut at = algo::idle_at(&self.state.get_mut().state, state_spec);
        if let Some(split) = split {
            for (part, p) in self.parts.iter_mut().zip(&split.parts) {
                at = at.max(algo::idle_at(&part.get_mut().state, &p.spec));
            }
        }
        at
    }

    /// Sets every state of the cell fresh; returns whether any was live at
    /// `now` (see [`BucketEntry::idle_at`]).
    fn reset(&self, spec: &LimitSpec, split: Option<&Shares>, now: Micros) -> bool {
        let mut old = BucketEntry::fresh(spec.algorithm, split);
        std::mem::swap(&mut *self.state.lock(), &mut *old.state.get_mut());
        for (part, fresh) in self.parts.iter().zip(old.parts.iter_mut()) {
            std::mem::swap(&mut *part.lock(), &mut *fresh.get_mut());
        }
        old.idle_at(spec, split) > now
    }
}

#[derive(Debug)]
struct KeyedLevel {
    /// The level, for specs when expiring idle buckets.
    level: Level,
    /// The split of each bucket when fair sharing splits this level.
    split: Option<Shares>,
    /// Shared with the stores of later policies that keep this level (see
    /// the module docs on reload).
    buckets: Arc<RwLock<BucketMap>>,
    /// Shared by values first seen while `buckets` is full.
    overflow: Arc<BucketEntry>,
    /// When the level last ran `expire_idle` on itself because it was full.
    last_full_expire: Arc<AtomicU64>,
}

/// A level without `by`: one bucket for the tree (shared with later
/// policies' stores like a keyed level's map).
#[derive(Debug)]
struct GlobalLevel {
    level: Level,
    /// The bucket's split when fair sharing splits this level.
    split: Option<Shares>,
    cell: Arc<BucketEntry>,
}

#[derive(Debug)]
enum LevelBuckets {
    Global(Box<GlobalLevel>),
    Keyed(Box<KeyedLevel>),
}

/// Whether two splits keep each other's parts as they are: both absent, or
/// the same layout ([`Shares::same_layout`]). Any other change is carried
/// (see [`LevelBuckets::share`]).
fn same_split(old: Option<&Shares>, new: Option<&Shares>) -> bool {
    match (old, new) {
        (None, None) => true,
        (Some(old), Some(new)) => old.same_layout(new),
        _ => false,
    }
}

/// The split of the bucket with `values` (some have their own, see
/// [`Shares::per_bucket`]).
fn split_for<'s>(split: Option<&'s Shares>, values: &[&str]) -> Option<&'s Shares> {
    split.map(|s| s.for_values(values))
}

impl BucketEntry {
    /// A bucket laid out by `split` (whole with `spec` when `None`) holding
    /// what `old` (whole, or a pool and its guarantees) holds at `now`: its used units
    /// carried over, the pool first (see [`algo::carry`]), so the parent
    /// never admits more than its limit across the reload. The pool (or the
    /// whole bucket) keeps the old one's last admission.
    fn carried(
        old: &BucketEntry,
        split: Option<&Shares>,
        spec: &LimitSpec,
        now: Micros,
    ) -> BucketEntry {
        let read = split.map_or(spec, |s| &s.pool);
        let (mut usage, last_admission) = {
            let cell = old.state.lock();
            (
                algo::carry::usage(&cell.state, now, read),
                cell.last_admission,
            )
        };
        for part in old.parts.iter() {
            usage.add(algo::carry::usage(&part.lock().state, now, read));
        }
        let mut fresh = BucketEntry::fresh(spec.algorithm, split);
        fresh.state.get_mut().last_admission = last_admission;
        let mut targets: Vec<(&mut BucketState, &LimitSpec)> =
            vec![(&mut fresh.state.get_mut().state, read)];
        if let Some(split) = split {
            for (part, p) in fresh.parts.iter_mut().zip(&split.parts) {
                targets.push((&mut part.get_mut().state, &p.spec));
            }
        }
        algo::carry::fill(usage, now, &mut targets);
        fresh
    }
}

impl LevelBuckets {
    /// Fresh state for `level`, each bucket split into parts when `split`
    /// splits it.
    fn fresh(level: &Level, split: Option<&Shares>) -> Self {
        if level.is_global() {
            LevelBuckets::Global(Box::new(GlobalLevel {
                level: level.clone(),
                split: split.cloned(),
                cell: Arc::new(BucketEntry::fresh(level.spec.algorithm, split)),
            }))
        } else {
            LevelBuckets::Keyed(Box::new(KeyedLevel {
                level: level.clone(),
                split: split.cloned(),
                buckets: Arc::new(RwLock::new(HashMap::new())),
                overflow: Arc::new(BucketEntry::fresh(level.spec.algorithm, split)),
                last_full_expire: Arc::new(AtomicU64::new(0)),
            }))
        }
    }

    fn level(&self) -> &Level {
        match self {
            LevelBuckets::Global(g) => &g.level,
            LevelBuckets::Keyed(k) => &k.level,
        }
    }

    fn split(&self) -> Option<&Shares> {
        match self {
            LevelBuckets::Global(g) => g.split.as_ref(),
            LevelBuckets::Keyed(k) => k.split.as_ref(),
        }
    }

    /// `level`'s buckets sharing this (old) level's state: the same locks,
    /// under the new level's limits and cap. A level split by fair sharing
    /// keeps its buckets' parts only when the new policy splits it the same
    /// way ([`same_split`]). Any other change of the split (another value
    /// guaranteed, a guarantee or the pool changed, a split level becoming
    /// whole or the reverse) carries each bucket's used units over into the
    /// new layout at `now` ([`BucketEntry::carried`]), so the parent never
    /// admits more than its limit in the window of the reload. A decision
    /// still running on the old store at that instant counts in the old
    /// layout only.
    fn share(&self, level: &Level, split: Option<&Shares>, now: Micros) -> Self {
        if !same_split(self.split(), split) {
            return self.carried(level, split, now);
        }
        match self {
            LevelBuckets::Global(g) => LevelBuckets::Global(Box::new(GlobalLevel {
                level: level.clone(),
                split: split.cloned(),
                cell: Arc::clone(&g.cell),
            })),
            LevelBuckets::Keyed(k) => LevelBuckets::Keyed(Box::new(KeyedLevel {
                level: level.clone(),
                split: split.cloned(),
                buckets: Arc::clone(&k.buckets),
                overflow: Arc::clone(&k.overflow),
                last_full_expire: Arc::clone(&k.last_full_expire),
            })),
        }
    }

    /// `level`'s buckets laid out by `split`, each holding what this (old)
    /// level's bucket of the same values holds at `now` (see
    /// [`LevelBuckets::share`]). A keyed level's map is copied under its
    /// write lock (no decision uses it meanwhile), its overflow bucket too.
    fn carried(&self, level: &Level, split: Option<&Shares>, now: Micros) -> Self {
        match self {
            LevelBuckets::Global(g) => LevelBuckets::Global(Box::new(GlobalLevel {
                level: level.clone(),
                split: split.cloned(),
                cell: Arc::new(BucketEntry::carried(&g.cell, split, &level.spec, now)),
            })),
            LevelBuckets::Keyed(k) => {
                let old = k.buckets.write();
                let buckets: BucketMap = old
                    .iter()
                    .map(|(key, entry)| {
                        let values: ArrayVec<&str, { crate::policy::MAX_BY_KEYS }> =
                            key.0.iter().map(|v| &**v).collect();
                        let spec = level.spec_for(&values);
                        let split = split_for(split, &values);
                        let carried = BucketEntry::carried(entry, split, spec, now);
                        (key.clone(), carried)
                    })
                    .collect();
                LevelBuckets::Keyed(Box::new(KeyedLevel {
                    level: level.clone(),
                    split: split.cloned(),
                    buckets: Arc::new(RwLock::new(buckets)),
                    overflow: Arc::new(BucketEntry::carried(&k.overflow, split, &level.spec, now)),
                    last_full_expire: Arc::new(AtomicU64::new(0)),
                }))
            }
        }
    }
}

/// Whether a bucket of `old` may keep its state as a bucket of `new`: the
/// same bucket (level name, `by` keys) counted the same way (algorithm).
/// Limits, windows, bursts, overrides, `shadow`, `required` and `max_buckets`
/// may differ: the kept state is read under the new ones.
pub fn keeps_state(old: &Level, new: &Level) -> bool {
    old.name == new.name && old.by == new.by && old.spec.algorithm == new.spec.algorithm
}

/// The shares that split level `index` of `tree`, if any.
fn shares_of(tree: &crate::policy::Tree, index: usize) -> Option<&Shares> {
    tree.split_of(index)
}

/// The in-process store. See the module docs for its guarantees.
#[derive(Debug)]
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    /// Per tree (by [`crate::policy::Tree::index`]), per level.
    trees: Vec<(String, Vec<LevelBuckets>)>,
}

impl MemoryStore {
    /// A store for `policy`'s trees on the system clock.
    pub fn new(policy: &Policy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock::new()))
    }

    /// A store for `policy`'s trees on `clock`.
    pub fn with_clock(policy: &Policy, clock: Arc<dyn Clock>) -> Self {
        let trees = policy
            .trees()
            .iter()
            .map(|tree| {
                let levels = tree
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(index, level)| LevelBuckets::fresh(level, shares_of(tree, index)))
                    .collect();
                (tree.name.clone(), levels)
            })
            .collect();
        MemoryStore { clock, trees }
    }

    /// A store for `policy` (a reloaded one) on this store's clock that
    /// shares this store's state for every level [`keeps_state`] holds for
    /// (same tree name, level name, `by` keys and algorithm) and starts the
    /// others fresh. See the module docs on reload.
    pub fn for_new_policy(&self, policy: &Policy) -> MemoryStore {
        let now = self.clock.now();
        let trees = policy
            .trees()
            .iter()
            .map(|tree| {
                let old = self.trees.iter().find(|(name, _)| *name == tree.name);
                let levels = tree
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(index, level)| {
                        let shares = shares_of(tree, index);
                        let kept = old.and_then(|(_, old_levels)| {
                            old_levels.iter().find(|b| keeps_state(b.level(), level))
                        });
                        match kept {
                            Some(buckets) => buckets.share(level, shares, now),
                            None => LevelBuckets::fresh(level, shares),
                        }
                    })
                    .collect();
                (tree.name.clone(), levels)
            })
            .collect();
        MemoryStore {
            clock: Arc::clone(&self.clock),
            trees,
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Number of keyed buckets currently held (overflow and global buckets aside).
    pub fn bucket_count(&self) -> usize {
        self.trees
            .iter()
            .flat_map(|(_, levels)| levels)
            .map(|l| match l {
                LevelBuckets::Global(_) => 0,
                LevelBuckets::Keyed(k) => k.buckets.read().len(),
            })
            .sum()
    }

    /// Decides `chain` now as [`MemoryStore::decide_chain`] does (the same
    /// decision, the same charges) and answers only yes or no, and when to
    /// retry: for callers that read nothing else (a governor-style check),
    /// without the per-level report a [`ChainOutcome`] carries. A chain with
    /// fair sharing, or with two buckets of one level (an Envoy call), is
    /// decided by [`MemoryStore::decide_chain`] and its answer cut down.
    pub fn admit_chain(&self, chain: &Chain<'_>, mode: Mode) -> Result<Admission, StoreError> {
        let levels = self.levels_of(chain.tree)?;
        if chain.shares.is_empty() && one_bucket_per_level(chain, levels.len()) {
            return Ok(admit_plain(levels, chain, mode, self.clock.now()));
        }
        let outcome = self.decide_chain(chain, mode)?;
        Ok(Admission {
            allowed: outcome.allowed,
            reason: outcome.reason,
            retry_after: outcome.retry_after,
        })
    }

    /// Decides `chain` now; the synchronous core of [`Store::decide`].
    pub fn decide_chain(&self, chain: &Chain<'_>, mode: Mode) -> Result<ChainOutcome, StoreError> {
        let levels = self.levels_of(chain.tree)?;
        let now = self.clock.now();
        if chain.shares.is_empty() && one_bucket_per_level(chain, levels.len()) {
            let mut outcome = ChainOutcome::empty();
            decide_plain(levels, chain, mode, now, &mut outcome);
            return Ok(outcome);
        }
        // The distinct keyed levels of the chain, ascending: their maps are
        // read-locked in this order (the same for every request, so a writer
        // waiting on one map never closes a cycle), each once even when the
        // chain has several buckets of one level (an Envoy rule matched with
        // different values).
        let mut keyed: ArrayVec<usize, MAX_LEVELS> = ArrayVec::new();
        for bucket in &chain.buckets {
            match levels.get(bucket.level_index) {
                Some(LevelBuckets::Keyed(_)) if !keyed.contains(&bucket.level_index) => {
                    keyed.push(bucket.level_index);
                }
                Some(_) => {}
                None => return Err(StoreError::UnknownTree(chain.tree.name.clone())),
            }
        }
        keyed.sort_unstable();
        loop {
            let maps: ArrayVec<(usize, RwLockReadGuard<'_, BucketMap>), MAX_LEVELS> = keyed
                .iter()
                .filter_map(|&l| match &levels[l] {
                    LevelBuckets::Keyed(k) => Some((l, k.buckets.read())),
                    LevelBuckets::Global(_) => None,
                })
                .collect();
            // Each bucket's state (and whether it is the overflow bucket's); a key
            // that is absent must be inserted under the write lock first.
            let mut slots: ArrayVec<(&BucketEntry, bool), MAX_LEVELS> = ArrayVec::new();
            let mut missing = None;
            for (i, bucket) in chain.buckets.iter().enumerate() {
                let slot = match &levels[bucket.level_index] {
                    LevelBuckets::Global(g) => Some((&*g.cell, false)),
                    LevelBuckets::Keyed(k) => {
                        let Some((_, map)) = maps.iter().find(|(l, _)| *l == bucket.level_index)
                        else {
                            return Err(StoreError::UnknownTree(chain.tree.name.clone()));
                        };
                        k.find(map, bucket, now)
                    }
                };
                match slot {
                    Some(slot) => slots.push(slot),
                    None => {
                        missing = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = missing {
                drop(slots);
                drop(maps);
                if let LevelBuckets::Keyed(k) = &levels[chain.buckets[i].level_index] {
                    k.insert(&chain.buckets[i].values, k.pinned(&chain.buckets[i]), now);
                }
                continue;
            }
            // A split parent's slot is its bucket's pool; the request's
            // guarantee lives with that same bucket (one per split).
            let parts: ArrayVec<Option<&Mutex<BucketCell>>, MAX_LEVELS> = chain
                .shares
                .iter()
                .map(|at| at.part.and_then(|p| slots[at.parent].0.parts.get(p)))
                .collect();
            let mut outcome = ChainOutcome::empty();
            decide_locked(chain, mode, now, &slots, &parts, &mut outcome);
            return Ok(outcome);
        }
    }
}

/// Whether `chain` has one bucket per level, levels ascending (every native
/// tree's chain; an Envoy call's unless two descriptors match one rule with
/// different values), all of them among the store's `levels`.
fn one_bucket_per_level(chain: &Chain<'_>, levels: usize) -> bool {
    let mut next = 0;
    for bucket in &chain.buckets {
        if bucket.level_index < next || bucket.level_index >= levels {
            return false;
        }
        next = bucket.level_index + 1;
    }
    true
}

/// Runs `decide` on the cells of the common chain — no fair sharing, one
/// bucket per level ([`one_bucket_per_level`]) — locked, with bit `i` of its
/// second argument set when bucket `i` landed in its level's overflow bucket.
///
/// The rules are [`decide_locked`]'s with less bookkeeping, which a decision
/// this cheap notices: levels ascend along the chain, so locking in chain
/// order *is* the lock order (level, then address), and no two buckets share
/// a state (each level's overflow bucket is its own), so each is asked for
/// its own cost.
#[inline(always)]
fn with_plain_cells<R>(
    levels: &[LevelBuckets],
    chain: &Chain<'_>,
    now: Micros,
    decide: impl FnOnce(&mut [MutexGuard<'_, BucketCell>], u32) -> R,
) -> R {
    loop {
        // Read-lock each keyed level's map, in chain (= level) order. (Loops
        // with `push`, not `collect`: ArrayVec's `FromIterator` costs more
        // than the locking here.)
        let mut maps: ArrayVec<Option<RwLockReadGuard<'_, BucketMap>>, MAX_LEVELS> =
            ArrayVec::new();
        for bucket in &chain.buckets {
            maps.push(match &levels[bucket.level_index] {
                LevelBuckets::Keyed(k) => Some(k.buckets.read()),
                LevelBuckets::Global(_) => None,
            });
        }
        let mut cells: ArrayVec<&Mutex<BucketCell>, MAX_LEVELS> = ArrayVec::new();
        let mut overflow = 0u32;
        let mut missing = None;
        for (i, (bucket, map)) in chain.buckets.iter().zip(&maps).enumerate() {
            let cell = match (&levels[bucket.level_index], map) {
                (LevelBuckets::Keyed(k), Some(map)) => {
                    k.find(map, bucket, now).map(|(entry, overflowed)| {
                        overflow |= u32::from(overflowed) << i;
                        &entry.state
                    })
                }
                (LevelBuckets::Global(g), _) => Some(&g.cell.state),
                (LevelBuckets::Keyed(_), None) => None,
            };
            match cell {
                Some(cell) => cells.push(cell),
                None => {
                    missing = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = missing {
            drop(cells);
            drop(maps);
            let bucket = &chain.buckets[i];
            if let LevelBuckets::Keyed(k) = &levels[bucket.level_index] {
                k.insert(&bucket.values, bucket.overridden, now);
            }
            continue;
        }
        let mut guards: ArrayVec<MutexGuard<'_, BucketCell>, MAX_LEVELS> = ArrayVec::new();
        for cell in &cells {
            guards.push(cell.lock());
        }
        return decide(&mut guards, overflow);
    }
}

/// [`MemoryStore::decide_chain`] for the common chain ([`with_plain_cells`]),
/// into `outcome`.
#[inline(always)]
fn decide_plain(
    levels: &[LevelBuckets],
    chain: &Chain<'_>,
    mode: Mode,
    now: Micros,
    outcome: &mut ChainOutcome,
) {
    with_plain_cells(levels, chain, now, |cells, overflow| {
        let mut verdicts: ArrayVec<algo::Verdict, MAX_LEVELS> = ArrayVec::new();
        for (i, (bucket, cell)) in chain.buckets.iter().zip(cells.iter_mut()).enumerate() {
            let spec = bucket.spec_in(overflow & (1 << i) != 0);
            cell.state.conform(spec);
            algo::prune(&mut cell.state, now, spec);
            verdicts.push(algo::decide(&cell.state, now, spec, bucket.probe(mode)));
        }
        let charged = ChainOutcome::combine_into(outcome, mode, chain, overflow, &verdicts, &[]);
        for (i, (bucket, cell)) in chain.buckets.iter().zip(cells.iter_mut()).enumerate() {
            if charged & (1 << i) != 0 {
                cell.charge(now, bucket.spec_in(overflow & (1 << i) != 0), bucket.cost);
            }
        }
        // A peek (what introspection reads) says when each bucket last admitted.
        if mode == Mode::Peek {
            for (level, cell) in outcome.levels.iter_mut().zip(cells.iter()) {
                level.since_admission = cell.last_admission().map(|at| now.saturating_sub(at));
            }
        }
    });
}

/// [`MemoryStore::admit_chain`] for the common chain ([`with_plain_cells`]):
/// [`decide_plain`] without the per-level report.
fn admit_plain(levels: &[LevelBuckets], chain: &Chain<'_>, mode: Mode, now: Micros) -> Admission {
    with_plain_cells(levels, chain, now, |cells, overflow| {
        let mut fits: ArrayVec<algo::Fit, MAX_LEVELS> = ArrayVec::new();
        for (i, (bucket, cell)) in chain.buckets.iter().zip(cells.iter_mut()).enumerate() {
            let spec = bucket.spec_in(overflow & (1 << i) != 0);
            cell.state.conform(spec);
            algo::prune(&mut cell.state, now, spec);
            fits.push(algo::fit(&cell.state, now, spec, bucket.probe(mode)));
        }
        let admission = Admission::combine(mode, chain, fits.iter().copied());
        if mode == Mode::Commit && admission.allowed {
            for (i, ((bucket, cell), fit)) in chain
                .buckets
                .iter()
                .zip(cells.iter_mut())
                .zip(&fits)
                .enumerate()
            {
                if takes(mode, true, fit.allowed, bucket.cost) {
                    cell.charge(now, bucket.spec_in(overflow & (1 << i) != 0), bucket.cost);
                }
            }
        }
        admission
    })
}

/// Locks `slots` (one per bucket of `chain`), decides and charges, into
/// `outcome` (filled in place, see [`ChainOutcome::combine_into`]). Every bucket
/// of a chain is distinct, but two of one level may share that level's
/// overflow bucket: each state is locked once, in one order for every
/// request (level, then address: the overflow bucket is per level), and a
/// shared one is evaluated for the sum of the costs that land on it.
///
/// With fair sharing, a shared parent's slot is its bucket's pool and
/// `parts[j]` (for `chain.shares[j]`) the request's guarantee in that bucket
/// (if it has one): locked just before the pool, so at the parent's place in
/// the order, and decided with it by [`share_verdict`].
fn decide_locked(
    chain: &Chain<'_>,
    mode: Mode,
    now: Micros,
    slots: &[(&BucketEntry, bool)],
    parts: &[Option<&Mutex<BucketCell>>],
    outcome: &mut ChainOutcome,
) {
    // Distinct states in lock order, and each bucket's position among them.
    let mut order: ArrayVec<usize, MAX_LEVELS> = ArrayVec::new();
    for i in 0..slots.len() {
        order.push(i);
    }
    order.sort_unstable_by_key(|&i| {
        (
            chain.buckets[i].level_index,
            std::ptr::from_ref(slots[i].0) as usize,
        )
    });
    // Up to twice the chain: each shared parent's guarantee.
    let mut guards: ArrayVec<MutexGuard<'_, BucketCell>, { 2 * MAX_LEVELS }> = ArrayVec::new();
    let mut guard_of = [0usize; MAX_LEVELS];
    let mut last: Option<*const BucketEntry> = None;
    // Per split of the chain (`chain.shares[j]`): its guarantee's guard.
    let mut part_guard = [None::<usize>; MAX_LEVELS];
    let share_of = |i: usize| chain.shares.iter().position(|s| s.parent == i);
    for &i in &order {
        let state = std::ptr::from_ref(slots[i].0);
        if let Some(j) = share_of(i)
            && let Some(part) = parts[j]
        {
            guards.push(part.lock());
            part_guard[j] = Some(guards.len() - 1);
        }
        if last != Some(state) {
            guards.push(slots[i].0.state.lock());
            last = Some(state);
        }
        guard_of[i] = guards.len() - 1;
    }
    // What each state is asked for: the sum of its buckets' costs (one
    // bucket's, but for a shared overflow bucket).
    let mut asked = [0u64; MAX_LEVELS];
    for (i, bucket) in chain.buckets.iter().enumerate() {
        asked[guard_of[i]] = asked[guard_of[i]].saturating_add(bucket.cost);
    }
    let mut overflow = 0u32;
    let mut verdicts: ArrayVec<algo::Verdict, MAX_LEVELS> = ArrayVec::new();
    let mut shares: ArrayVec<ShareVerdict, MAX_LEVELS> = ArrayVec::new();
    for (i, bucket) in chain.buckets.iter().enumerate() {
        if let Some(j) = share_of(i) {
            let at = &chain.shares[j];
            let part_guard = part_guard[j];
            // A keyed parent's team past its cap is split in the overflow
            // bucket (which holds the level's limit, as every team's does).
            if slots[i].1 {
                overflow |= 1 << i;
            }
            let pool_spec = &at.shares.pool;
            let pool = &mut guards[guard_of[i]].state;
            pool.conform(pool_spec);
            algo::prune(pool, now, pool_spec);
            let part_spec = at.part_spec();
            if let (Some(g), Some(spec)) = (part_guard, part_spec) {
                let part = &mut guards[g].state;
                part.conform(spec);
                algo::prune(part, now, spec);
            }
            let (pool, part) = (
                &guards[guard_of[i]].state,
                part_guard.map(|g| &guards[g].state),
            );
            let sv = algo::with_view(pool, now, pool_spec, |pv| {
                let pool = PartView {
                    view: pv,
                    capacity: pool_spec.capacity(),
                };
                match part.zip(part_spec) {
                    Some((state, spec)) => algo::with_view(state, now, spec, |gv| {
                        let g = PartView {
                            view: gv,
                            capacity: spec.capacity(),
                        };
                        share_verdict(Some((g, spec.limit)), pool, bucket.probe(mode), None)
                    }),
                    None => share_verdict(None, pool, bucket.probe(mode), None),
                }
            });
            verdicts.push(sv.verdict);
            shares.push(sv);
            continue;
        }
        let overflowed = slots[i].1;
        let spec = bucket.spec_in(overflowed);
        let state = &mut guards[guard_of[i]].state;
        state.conform(spec);
        algo::prune(state, now, spec);
        if overflowed {
            overflow |= 1 << i;
        }
        let probe = match bucket.probe(mode) {
            0 => 0,
            probe if mode == Mode::Peek => probe,
            _ => asked[guard_of[i]],
        };
        verdicts.push(algo::decide(state, now, spec, probe));
    }
    let charged = ChainOutcome::combine_into(outcome, mode, chain, overflow, &verdicts, &shares);
    for (i, bucket) in chain.buckets.iter().enumerate() {
        if charged & (1 << i) != 0
            && let Some(j) = share_of(i)
        {
            let (at, sv) = (&chain.shares[j], &shares[j]);
            if let (Some(g), Some(spec)) = (part_guard[j], at.part_spec())
                && sv.from_guarantee > 0
            {
                guards[g].charge(now, spec, sv.from_guarantee);
            }
            if sv.from_pool > 0 {
                guards[guard_of[i]].charge(now, &at.shares.pool, sv.from_pool);
            }
            // The pool stands for the level (a peek of it reads the pool):
            // it records the level's admission whichever part gave.
            guards[guard_of[i]].admitted(now);
        } else if charged & (1 << i) != 0 {
            let spec = bucket.spec_in(slots[i].1);
            guards[guard_of[i]].charge(now, spec, bucket.cost);
        }
    }
    // A peek (what introspection reads) says when each bucket last admitted
    // (a shared parent: its pool, which records every admission of the
    // level). Other modes skip it: a check's answer does not carry it.
    for (i, level) in outcome
        .levels
        .iter_mut()
        .enumerate()
        .filter(|_| mode == Mode::Peek)
    {
        let last = guards[guard_of[i]].last_admission();
        level.since_admission = last.map(|at| now.saturating_sub(at));
    }
}

impl KeyedLevel {
    /// Whether `bucket` always gets a bucket of its own (never the overflow
    /// bucket): an overridden one, or one with a split of its own.
    fn pinned(&self, bucket: &Bucket<'_>) -> bool {
        bucket.overridden
            || self
                .split
                .as_ref()
                .is_some_and(|s| s.own_split(&bucket.values).is_some())
    }

    /// `bucket`'s entry in `map` (this level's, read-locked), and whether it
    /// is the overflow bucket (the level is full, the value is new and no
    /// expiry is due); `None`: it must be inserted first ([`KeyedLevel::insert`]).
    #[inline]
    fn find<'m>(
        &'m self,
        map: &'m BucketMap,
        bucket: &Bucket<'_>,
        now: Micros,
    ) -> Option<(&'m BucketEntry, bool)> {
        match map.get(&KeyRef(&bucket.values)) {
            Some(entry) => Some((entry, false)),
            None if map.len() >= self.level.max_buckets
                && !self.pinned(bucket)
                && !self.expire_idle_due(now) =>
            {
                Some((&*self.overflow, true))
            }
            None => None,
        }
    }

    fn expire_idle_due(&self, now: Micros) -> bool {
        now >= self
            .last_full_expire
            .load(Ordering::Relaxed)
            .saturating_add(FULL_LEVEL_EXPIRE_INTERVAL)
    }

    /// Adds a fresh bucket for `values` unless the level is full; a full level
    /// first drops its idle buckets (at most once per [`FULL_LEVEL_EXPIRE_INTERVAL`]).
    fn insert(&self, values: &[&str], overridden: bool, now: Micros) {
        let mut map = self.buckets.write();
        let key = KeyRef(values);
        if map.contains_key(&key) {
            return;
        }
        if map.len() >= self.level.max_buckets && !overridden {
            if !self.expire_idle_due(now) {
                return;
            }
            self.last_full_expire.store(now, Ordering::Relaxed);
            let dropped = expire_idle_in(&self.level, self.split.as_ref(), &mut map, now);
            tracing::debug!(level = %self.level.name, dropped, "level full: expire_idle dropped idle buckets");
            if map.len() >= self.level.max_buckets {
                tracing::warn!(
                    level = %self.level.name,
                    max_buckets = self.level.max_buckets,
                    "level holds max_buckets live buckets; new values share the overflow bucket"
                );
                return;
            }
        }
        let spec = self.level.spec_for(values);
        map.insert(
            key.to_owned_key(),
            BucketEntry::fresh(spec.algorithm, split_for(self.split.as_ref(), values)),
        );
    }
}

/// [`Store::expire_idle`] for one level: drops its idle buckets (a split
/// bucket once its pool and every guarantee are idle); returns how many.
fn expire_idle_in(
    level: &Level,
    split: Option<&Shares>,
    map: &mut BucketMap,
    now: Micros,
) -> usize {
    let before = map.len();
    map.retain(|key, cell| {
        let values: ArrayVec<&str, { crate::policy::MAX_BY_KEYS }> =
            key.0.iter().map(|v| &**v).collect();
        let spec = level.spec_for(&values);
        cell.idle_at(spec, split_for(split, &values)) > now
    });
    before - map.len()
}

impl Store for MemoryStore {
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(std::future::ready(self.decide_chain(chain, mode)))
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn expire_idle(&self) -> usize {
        let now = self.clock.now();
        let mut dropped = 0;
        for (_, levels) in &self.trees {
            for level in levels {
                if let LevelBuckets::Keyed(k) = level {
                    dropped +=
                        expire_idle_in(&k.level, k.split.as_ref(), &mut k.buckets.write(), now);
                }
            }
        }
        dropped
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    /// `old` is this store's own layout, which it knows.
    fn for_policy(&self, _old: &Policy, policy: &Policy) -> Option<Arc<dyn Store>> {
        Some(Arc::new(self.for_new_policy(policy)))
    }

    fn scan_buckets<'a>(
        &'a self,
        scan: BucketScan<'a>,
    ) -> BoxFuture<'a, Result<ScannedBuckets, StoreError>> {
        Box::pin(std::future::ready(self.scan_level(scan)))
    }

    fn reset<'a>(&'a self, chain: &'a Chain<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(std::future::ready(self.reset_chain(chain)))
    }
}

impl MemoryStore {
    /// The tree's levels, if this store was built for it.
    fn levels_of(&self, tree: &crate::policy::Tree) -> Result<&[LevelBuckets], StoreError> {
        match self.trees.get(tree.index) {
            Some((name, levels)) if *name == tree.name => Ok(levels),
            _ => Err(StoreError::UnknownTree(tree.name.clone())),
        }
    }

    /// [`Store::scan_buckets`]: the level's map under its read lock, so a
    /// scan holds off new buckets of that level (not decisions on existing
    /// ones) for as long as it takes to copy at most `max_buckets` keys.
    fn scan_level(&self, scan: BucketScan<'_>) -> Result<ScannedBuckets, StoreError> {
        let levels = self.levels_of(scan.tree)?;
        match levels.get(scan.level_index) {
            None => Err(StoreError::UnknownTree(scan.tree.name.clone())),
            Some(LevelBuckets::Global(_)) => Ok(ScannedBuckets {
                buckets: vec![Vec::new()],
                truncated: false,
            }),
            Some(LevelBuckets::Keyed(k)) => {
                let map = k.buckets.read();
                let mut matching = map.keys().filter(|key| match scan.prefix {
                    None => true,
                    Some(prefix) => key.0.first().is_some_and(|v| v.starts_with(prefix)),
                });
                let buckets: Vec<Vec<String>> = matching
                    .by_ref()
                    .take(scan.max_buckets)
                    .map(|key| key.0.iter().map(|v| v.to_string()).collect())
                    .collect();
                let truncated = matching.next().is_some();
                Ok(ScannedBuckets { buckets, truncated })
            }
        }
    }

    /// [`Store::reset`]: a keyed bucket is removed from its level's map
    /// (under the write lock, so nobody is using it), a global one set fresh.
    /// A bucket counts as reset if it held live state (it was not idle), as
    /// a Redis key exists only until its state goes idle.
    pub fn reset_chain(&self, chain: &Chain<'_>) -> Result<usize, StoreError> {
        let levels = self.levels_of(chain.tree)?;
        let now = self.clock.now();
        let mut reset = 0;
        for bucket in &chain.buckets {
            match levels.get(bucket.level_index) {
                None => return Err(StoreError::UnknownTree(chain.tree.name.clone())),
                // A split bucket is its parts: every guarantee and the pool.
                Some(LevelBuckets::Global(g)) => {
                    reset += usize::from(g.cell.reset(bucket.spec, g.split.as_ref(), now));
                }
                Some(LevelBuckets::Keyed(k)) => {
                    let removed = k.buckets.write().remove(&KeyRef(&bucket.values));
                    let split = split_for(k.split.as_ref(), &bucket.values);
                    reset += usize::from(
                        removed.is_some_and(|mut c| c.idle_at(bucket.spec, split) > now),
                    );
                }
            }
        }
        Ok(reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two buckets of one level (one Envoy rule, two values) that both land
    /// in the level's overflow bucket share it: locked once (no deadlock),
    /// asked for both costs together, charged both.
    #[test]
    fn two_buckets_in_one_overflow_bucket_are_asked_for_their_sum() {
        let domain = crate::policy::envoy::EnvoyConfig::from_yaml_str(
            "domain: d\ndescriptors:\n  - key: ip\n    rate_limit:\n      unit: minute\n      requests_per_unit: 4\n",
            "d.yaml",
        )
        .unwrap();
        let policy = Policy::from_envoy_domains(vec![domain]).unwrap();
        let mut tree = policy.trees()[0].clone();
        tree.levels[0].max_buckets = 1;
        let policy = Policy::from_parts(vec![tree], Vec::new());
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000_000));
        let store = MemoryStore::with_clock(&policy, clock);
        let tree = &policy.trees()[0];
        let decide = |descriptors: &[Vec<(&str, &str)>], costs: &[u64]| {
            let (chain, _) = tree.chain_for_descriptors(descriptors, costs).unwrap();
            store.decide_chain(&chain, Mode::Commit).unwrap()
        };
        assert!(decide(&[vec![("ip", "a")]], &[1]).allowed);
        let two = [vec![("ip", "x")], vec![("ip", "y")]];
        let o = decide(&two, &[2, 3]);
        assert!(!o.allowed && o.levels.iter().all(|l| l.overflow), "{o:?}");
        let o = decide(&two, &[2, 2]);
        assert!(o.allowed, "{o:?}");
        assert_eq!(
            o.levels.iter().map(|l| l.remaining).collect::<Vec<_>>(),
            [0, 0]
        );
        assert!(!decide(&[vec![("ip", "z")]], &[1]).allowed);
    }
}
