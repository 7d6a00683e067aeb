//! What a chain decision says — allowed or not, why, per level, and when to
//! retry — and the one all-or-nothing rule every store applies
//! ([`ChainOutcome::combine`]).
//!
//! # A level's record, stage by stage
//! Each stage is its own type because each knows something the one before
//! does not:
//! 1. [`Verdict`] (in [`crate::algo`]): one bucket's answer for a cost, from
//!    its state alone — room or not, what is left, when to retry. Knows
//!    nothing of levels or chains.
//! 2. [`Bucket`](crate::chain::Bucket) (in [`crate::chain`]): which level and bucket, and the limit
//!    it holds — what the chain rule needs besides the verdict. (A store adds
//!    one bit: whether the request landed in the level's overflow bucket.)
//! 3. [`LevelOutcome`]: the level's part of a store's answer, made by
//!    [`ChainOutcome::combine`] from the two above under the all-or-nothing
//!    rule (what is left *after this decision*). Plain numbers, no heap: it is
//!    on every store's hot path.
//! 4. [`LevelStatus`]: the same, named for people and the API — the level's
//!    name and the bucket's label instead of indexes. Built once per request,
//!    by [`Decision::new`].

use std::fmt;

use crate::algo::{self, BucketView, Verdict};
use crate::chain::Chain;
use crate::clock::Micros;
use crate::inline_vec::InlineVec;

/// The largest cost one request may carry (the same bound as a limit).
pub const MAX_COST: u64 = crate::policy::MAX_LIMIT;

/// What to do with a request that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Charge every bucket its own cost (a normal check).
    Commit,
    /// Answer as a commit would, record nothing.
    DryRun,
    /// The whole chain costs 0: report the state; `allowed` says whether one
    /// more unit fits at every bucket. (A bucket of cost 0 in a chain that costs
    /// something is not a peek: see [`ChainOutcome::combine`].)
    Peek,
}

impl Mode {
    /// The mode for a request's `cost` and `dry_run`.
    pub fn for_request(cost: u64, dry_run: bool) -> Mode {
        if cost == 0 {
            Mode::Peek
        } else if dry_run {
            Mode::DryRun
        } else {
            Mode::Commit
        }
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Every level had room.
    Ok,
    /// At least one level had no room now; see `retry_after`.
    Limited,
    /// The cost exceeds what some level can ever hold; retrying will not help.
    InsufficientCapacity,
    /// Decided without the store, by its `on_error`.
    StoreUnavailable,
    /// Admitted, but a shadow level would have denied.
    Shadow,
}

impl Reason {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Limited => "limited",
            Reason::InsufficientCapacity => "insufficient_capacity",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::Shadow => "shadow",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One level's part in a store's decision (stage 3, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelOutcome {
    /// Position of the level in its tree.
    pub level_index: usize,
    /// This level had room for the cost (for a shadow level: would have had).
    pub allowed: bool,
    /// Units left after the decision.
    pub remaining: u64,
    /// The bucket's limit and window.
    pub limit: u64,
    /// Window in microseconds.
    pub window: Micros,
    /// Wait until the bucket is full again.
    pub reset_after: Micros,
    /// When this level denied: the exact wait until it would have room.
    pub retry_after: Option<Micros>,
    /// The cost exceeds this bucket's capacity.
    pub insufficient: bool,
    /// The level is a shadow level.
    pub shadow: bool,
    /// The request landed in the level's overflow bucket (its cap of distinct
    /// buckets was reached).
    pub overflow: bool,
    /// Fair sharing: the parent's pool, or the child's guarantee (trees with
    /// [`Shares`](crate::policy::Shares) only).
    pub share: Option<LevelShare>,
    /// In a [`Mode::Peek`]: how long ago the bucket last admitted a charge
    /// (a [`Mode::Commit`] that charged it); denials, peeks and dry runs do
    /// not count. For the introspection API ([`crate::inspect`]), so
    /// `None` in every other mode. `None` in a peek: the store does not
    /// record admissions, or the bucket has had
    /// none since it was created, reset or dropped as idle.
    pub since_admission: Option<Micros>,
}

/// A level's part in fair sharing (see [`crate::policy::Shares`]), as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelShare {
    /// On the parent level: what its pool has left (after this request, if it
    /// was charged).
    Parent {
        /// Units left in the pool.
        pool_remaining: u64,
    },
    /// On the child level: the value's guarantee of the parent and how this
    /// request used it.
    Child {
        /// The value's guarantee (0: it has none and only borrows).
        guaranteed: u64,
        /// Units left in the guarantee.
        remaining: u64,
        /// How much of this request came from the pool (0 unless charged).
        borrowed: u64,
    },
    /// On a level between two splits (a child of the level above, split
    /// itself for the level below): both.
    Middle {
        /// Units left in this level's own pool (as [`LevelShare::Parent`]).
        pool_remaining: u64,
        /// Its value's guarantee in the level above (as [`LevelShare::Child`]).
        guaranteed: u64,
        /// Units left in that guarantee.
        remaining: u64,
        /// How much of this request came from the level above's pool.
        borrowed: u64,
    },
}

impl LevelShare {
    /// What is left in the level's own pool, when it is split.
    pub fn pool_remaining(&self) -> Option<u64> {
        match *self {
            LevelShare::Parent { pool_remaining } | LevelShare::Middle { pool_remaining, .. } => {
                Some(pool_remaining)
            }
            LevelShare::Child { .. } => None,
        }
    }

    /// The level's guarantee in the level above, left, and borrowed
    /// (`(guaranteed, remaining, borrowed)`), when it is a child.
    pub fn guarantee(&self) -> Option<(u64, u64, u64)> {
        match *self {
            LevelShare::Child {
                guaranteed,
                remaining,
                borrowed,
            }
            | LevelShare::Middle {
                guaranteed,
                remaining,
                borrowed,
                ..
            } => Some((guaranteed, remaining, borrowed)),
            LevelShare::Parent { .. } => None,
        }
    }
}

/// What a shared parent level's parts — the request's guarantee (if any) and
/// the pool — say about a request: the one rule both stores use to split it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareVerdict {
    /// The parent level's verdict, as if it were one bucket: room iff
    /// guarantee plus pool can take the cost; `retry_after` the earliest wait
    /// at which they can ([`share_retry`]).
    pub verdict: Verdict,
    /// The request's guarantee (0: none).
    pub guaranteed: u64,
    /// Units the guarantee could give now.
    pub guarantee_available: u64,
    /// Units the pool could give now.
    pub pool_available: u64,
    /// Of the cost: what the guarantee gives (it is taken first) …
    pub from_guarantee: u64,
    /// … and what the pool gives (the rest).
    pub from_pool: u64,
}

/// One part of a shared parent, as a store sees it for a decision.
#[derive(Clone, Copy)]
#[expect(
    missing_debug_implementations,
    reason = "a view is a borrowed trait object, alive for one decision"
)]
pub struct PartView<'v> {
    /// The part's bucket at `now`.
    pub view: &'v dyn BucketView,
    /// The part's capacity (its spec's).
    pub capacity: u64,
}

/// The verdict of a shared parent on `cost` (see [`ShareVerdict`]):
/// `guarantee` is the request's guarantee (with its share), `pool` the pool.
/// `retry` overrides how the wait is found (the Redis store's sliding_log,
/// whose script searches the logs with [`share_retry`]'s steps); `None`:
/// [`share_retry`] on the views.
pub fn share_verdict(
    guarantee: Option<(PartView<'_>, u64)>,
    pool: PartView<'_>,
    cost: u64,
    retry: Option<Micros>,
) -> ShareVerdict {
    let (ga, gcap) = guarantee.map_or((0, 0), |(g, _)| (g.view.available(), g.capacity));
    let pa = pool.view.available();
    let available = ga.saturating_add(pa);
    let insufficient = cost > gcap.saturating_add(pool.capacity);
    let allowed = !insufficient && cost <= available;
    let from_guarantee = cost.min(ga);
    let from_pool = cost - from_guarantee;
    let reset = |g: u64, p: u64| {
        let from_g = guarantee.map_or(0, |(part, _)| part.view.reset_after(g));
        from_g.max(pool.view.reset_after(p))
    };
    let reset_after_now = reset(0, 0);
    let retry_after = (!allowed && !insufficient).then(|| {
        retry.unwrap_or_else(|| {
            let g_wait = |k| guarantee.map_or(0, |(part, _)| part.view.retry_after(k));
            let p_wait = |k| pool.view.retry_after(k);
            share_retry(
                cost,
                guarantee.map(|_| (ga, gcap, &g_wait as &dyn Fn(u64) -> Micros)),
                (pa, pool.capacity, &p_wait),
            )
        })
    });
    ShareVerdict {
        verdict: Verdict {
            allowed,
            available,
            remaining: if allowed { available - cost } else { available },
            reset_after: if allowed {
                reset(from_guarantee, from_pool)
            } else {
                reset_after_now
            },
            reset_after_now,
            retry_after,
            insufficient,
        },
        guaranteed: guarantee.map_or(0, |(_, g)| g),
        guarantee_available: ga,
        pool_available: pa,
        from_guarantee,
        from_pool,
    }
}

/// A part for [`share_retry`]: units it could give now, its capacity, and
/// its exact wait until it could give `k` (for `available < k ≤ capacity`).
pub type RetryPart<'f> = (u64, u64, &'f dyn Fn(u64) -> Micros);

/// The earliest wait at which `guarantee` and `pool` together can give
/// `cost` (`cost` within their capacities, not available now), if nothing
/// else arrives: the least over splits `k` (from the guarantee) of the later
/// of the two parts' waits. The guarantee's wait grows with `k` and the
/// pool's shrinks, so the least is where they cross: a binary search, about
/// 2·log2(cost) waits. Exact and never early because each part's wait is.
/// `decide.lua` transcribes it step by step for sliding_log.
pub fn share_retry(cost: u64, guarantee: Option<RetryPart<'_>>, pool: RetryPart<'_>) -> Micros {
    let (ga, gcap, g_wait) = guarantee.unwrap_or((0, 0, &|_| 0));
    let (pa, pcap, p_wait) = pool;
    let wg = |k: u64| if k <= ga { 0 } else { g_wait(k) };
    let wp = |k: u64| if k <= pa { 0 } else { p_wait(k) };
    let lo = cost.saturating_sub(pcap);
    let hi = cost.min(gcap);
    // The first k in lo..=hi at which the guarantee's wait reaches the pool's.
    let (mut a, mut b) = (lo, hi + 1);
    while a < b {
        let m = a + (b - a) / 2;
        if wg(m) >= wp(cost - m) {
            b = m;
        } else {
            a = m + 1;
        }
    }
    if a > hi {
        return wp(cost - hi);
    }
    let at = wg(a);
    if a == lo {
        return at;
    }
    at.min(wp(cost - (a - 1)))
}

/// A chain's per-level outcomes, root first (at most [`MAX_LEVELS`](crate::policy::MAX_LEVELS)): four
/// inline, so a decision of a tree of up to four levels allocates nothing and
/// moves few bytes (each return copies the inline room whole).
pub type LevelOutcomes = InlineVec<LevelOutcome, 4>;

/// A whole chain's decision, as a store returns it (no heap allocation for
/// trees of up to four levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    /// Every non-shadow level had room, and (unless a dry run or peek) all were charged.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// When denied for lack of room now: the earliest time the whole chain could
    /// take the cost if nothing else arrived (max over the denying levels).
    pub retry_after: Option<Micros>,
    /// Per level, root first.
    pub levels: LevelOutcomes,
}

impl ChainOutcome {
    /// Combines per-level verdicts under the all-or-nothing rule. `verdicts`
    /// were computed for each bucket's [`Bucket::probe`](crate::chain::Bucket::probe) (its cost; 1 for a
    /// peek), one per bucket of `chain`; bit `i` of `overflow` says the
    /// request's bucket `i` was its level's overflow bucket (see
    /// [`Bucket::spec_in`](crate::chain::Bucket::spec_in)).
    ///
    /// A bucket of cost 0 in a commit or dry run fits by definition (it takes
    /// nothing): it is reported as a peek reports it (what is left now), never
    /// denies and is never charged. A [`Chain::blocked`] rule that
    /// [applies](crate::chain::BlockedRule::applies) denies the chain as a
    /// bucket of limit 0 would (`insufficient_capacity`: retrying never helps),
    /// unless it is in shadow mode.
    ///
    /// With fair sharing ([`Chain::shares`]), `shares` holds each shared
    /// parent's [`ShareVerdict`], in the order of `chain.shares` (its
    /// `verdict` is also the parent's in `verdicts`): a parent's record gains
    /// its pool, a child's its guarantee (a level between two splits both),
    /// and a charged parent is charged by the split (the guarantee first).
    ///
    /// Returns the outcome and a bit mask of the buckets to charge (each with
    /// its own cost): none unless the chain is admitted in [`Mode::Commit`],
    /// never a bucket of cost 0, and never a shadow level that had no room.
    #[inline]
    pub fn combine(
        mode: Mode,
        chain: &Chain<'_>,
        overflow: u32,
        verdicts: &[Verdict],
        shares: &[ShareVerdict],
    ) -> (ChainOutcome, u32) {
        let mut outcome = ChainOutcome::empty();
        let charge = Self::combine_into(&mut outcome, mode, chain, overflow, verdicts, shares);
        (outcome, charge)
    }

    /// [`ChainOutcome::combine`] into `outcome` (its levels cleared first):
    /// a store's hot path fills the outcome it returns in place, where
    /// passing one by value copies ~0.5 KB at each step (trees of up to four
    /// levels; see [`LevelOutcomes`]).
    #[inline(always)]
    pub(crate) fn combine_into(
        outcome: &mut ChainOutcome,
        mode: Mode,
        chain: &Chain<'_>,
        overflow: u32,
        verdicts: &[Verdict],
        shares: &[ShareVerdict],
    ) -> u32 {
        let buckets = &chain.buckets[..];
        let admission = Admission::combine(
            mode,
            chain,
            verdicts.iter().map(|v| algo::Fit {
                allowed: v.allowed,
                insufficient: v.insufficient,
                retry_after: v.retry_after,
            }),
        );
        let allowed = admission.allowed;
        outcome.allowed = allowed;
        outcome.reason = admission.reason;
        outcome.retry_after = admission.retry_after;
        outcome.levels.clear();
        let mut charge = 0;
        // Whether a shared parent takes something (then its child's
        // guarantee and borrowing are what this request took).
        let share_takes = |at: &crate::chain::ChainShare<'_>, sv: &ShareVerdict| {
            let parent = &buckets[at.parent];
            takes(mode, allowed, sv.verdict.allowed, parent.cost)
        };
        let level_share = |i: usize| -> Option<LevelShare> {
            if shares.is_empty() {
                return None;
            }
            let pool = chain
                .shares
                .iter()
                .zip(shares)
                .find(|(at, _)| at.parent == i)
                .map(|(at, sv)| {
                    sv.pool_available - if share_takes(at, sv) { sv.from_pool } else { 0 }
                });
            let guarantee = chain
                .shares
                .iter()
                .zip(shares)
                .find(|(at, _)| at.child == Some(i))
                .map(|(at, sv)| {
                    let took = share_takes(at, sv);
                    (
                        sv.guaranteed,
                        sv.guarantee_available - if took { sv.from_guarantee } else { 0 },
                        if took { sv.from_pool } else { 0 },
                    )
                });
            match (pool, guarantee) {
                (Some(pool_remaining), None) => Some(LevelShare::Parent { pool_remaining }),
                (None, Some((guaranteed, remaining, borrowed))) => Some(LevelShare::Child {
                    guaranteed,
                    remaining,
                    borrowed,
                }),
                (Some(pool_remaining), Some((guaranteed, remaining, borrowed))) => {
                    Some(LevelShare::Middle {
                        pool_remaining,
                        guaranteed,
                        remaining,
                        borrowed,
                    })
                }
                (None, None) => None,
            }
        };
        for (i, (bucket, v)) in buckets.iter().zip(verdicts).enumerate() {
            let overflowed = overflow & (1 << i) != 0;
            let spec = bucket.spec_in(overflowed);
            // Takes something from this bucket if the chain is admitted. A peek
            // (and a bucket of cost 0) reports what is left now; otherwise
            // what is left after this request if the chain admits it.
            let takes = takes(mode, allowed, v.allowed, bucket.cost);
            let (remaining, reset_after) = if takes {
                (v.remaining, v.reset_after)
            } else {
                (v.available, v.reset_after_now)
            };
            outcome.levels.push(LevelOutcome {
                level_index: bucket.level_index,
                allowed: v.allowed,
                remaining,
                limit: spec.limit,
                window: spec.window,
                reset_after,
                retry_after: v.retry_after,
                insufficient: v.insufficient,
                shadow: bucket.level.shadow,
                overflow: overflowed,
                share: if shares.is_empty() {
                    None
                } else {
                    level_share(i)
                },
                // Only a store that records admissions knows; it fills this in.
                since_admission: None,
            });
            if takes && mode == Mode::Commit {
                charge |= 1 << i;
            }
        }
        charge
    }
}

impl ChainOutcome {
    /// An outcome with no levels yet, for [`ChainOutcome::combine_into`] to
    /// fill (what it says before then means nothing).
    pub(crate) fn empty() -> Self {
        ChainOutcome {
            allowed: false,
            reason: Reason::Limited,
            retry_after: None,
            levels: LevelOutcomes::new(),
        }
    }
}

/// Whether an admitted (or not) chain takes something from a bucket whose
/// level had room (or not) for its `cost`: only an admitted chain, never a
/// peek, never a bucket of cost 0, never a (shadow) level that had no room.
/// What a dry run reports as taken; what a commit charges.
#[inline]
pub fn takes(mode: Mode, admitted: bool, level_allowed: bool, cost: u64) -> bool {
    admitted && level_allowed && mode != Mode::Peek && cost > 0
}

/// The part of a [`ChainOutcome`] a caller that needs only yes or no reads
/// ([`MemoryStore::admit_chain`](crate::MemoryStore::admit_chain)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Every non-shadow level had room, and (unless a dry run or peek) all were charged.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// When denied for lack of room now: the earliest time the whole chain could
    /// take the cost if nothing else arrived (max over the denying levels).
    pub retry_after: Option<Micros>,
}

impl Admission {
    /// The all-or-nothing rule over `fits` (one per bucket of `chain`, for
    /// its [`Bucket::probe`](crate::chain::Bucket::probe)) and the chain's
    /// blocking rules; see [`ChainOutcome::combine`]. The one place the rule
    /// lives: every store's answer is made here.
    #[inline]
    pub fn combine(mode: Mode, chain: &Chain<'_>, fits: impl Iterator<Item = algo::Fit>) -> Self {
        let mut allowed = true;
        let mut insufficient = false;
        let mut shadow_denied = false;
        let mut retry: Option<Micros> = None;
        for (bucket, fit) in chain.buckets.iter().zip(fits) {
            if fit.allowed {
                continue;
            }
            if bucket.level.shadow {
                shadow_denied = true;
                continue;
            }
            allowed = false;
            insufficient |= fit.insufficient;
            retry = retry.max(fit.retry_after);
        }
        for blocked in chain.blocked.iter().filter(|b| b.applies(mode)) {
            if blocked.shadow {
                shadow_denied = true;
            } else {
                allowed = false;
                insufficient = true;
            }
        }
        let reason = if insufficient {
            Reason::InsufficientCapacity
        } else if !allowed {
            Reason::Limited
        } else if shadow_denied {
            Reason::Shadow
        } else {
            Reason::Ok
        };
        Admission {
            allowed,
            reason,
            retry_after: if insufficient { None } else { retry },
        }
    }
}

/// One level's part in a [`Decision`], named for people and the API (stage 4,
/// see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelStatus {
    /// The level's name.
    pub name: String,
    /// The bucket: `category=errors`, `*` for a global level, or
    /// `category=<overflow>` when the level's bucket cap was reached.
    pub bucket: String,
    /// The bucket's limit per window.
    pub limit: u64,
    /// The bucket's window, in microseconds.
    pub window: Micros,
    /// Units left.
    pub remaining: u64,
    /// Wait until the bucket is full again.
    pub reset_after: Micros,
    /// This level had room.
    pub allowed: bool,
    /// When this level lacked room: the exact wait until it has.
    pub retry_after: Option<Micros>,
    /// A shadow level (reported, never denies).
    pub shadow: bool,
    /// Fair sharing: the parent's pool or the child's guarantee (`None` in a
    /// tree without shares).
    pub share: Option<LevelShare>,
}

/// The answer to a [`CheckRequest`](crate::CheckRequest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The tree decided.
    pub tree: String,
    /// Admitted (and, unless a dry run or peek, charged at every level).
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// When limited: the earliest wait after which the whole chain could take the
    /// cost if nothing else arrived. Never early.
    pub retry_after: Option<Micros>,
    /// Per level, root first.
    pub levels: Vec<LevelStatus>,
}

impl LevelStatus {
    /// `outcome`, the store's answer for `bucket`, with names.
    pub fn new(bucket: &crate::chain::Bucket<'_>, outcome: &LevelOutcome) -> Self {
        LevelStatus {
            name: bucket.level.name.clone(),
            bucket: if outcome.overflow {
                format!("{}=<overflow>", bucket.level.by.join(","))
            } else {
                bucket.label()
            },
            limit: outcome.limit,
            window: outcome.window,
            remaining: outcome.remaining,
            reset_after: outcome.reset_after,
            allowed: outcome.allowed,
            retry_after: outcome.retry_after,
            shadow: outcome.shadow,
            share: outcome.share,
        }
    }
}

impl Decision {
    /// The answer for `chain`, from the store's `outcome` for it.
    pub fn new(chain: &Chain<'_>, outcome: &ChainOutcome) -> Self {
        Decision {
            tree: chain.tree.name.clone(),
            allowed: outcome.allowed,
            reason: outcome.reason,
            retry_after: outcome.retry_after,
            levels: chain
                .buckets
                .iter()
                .zip(&outcome.levels)
                .map(|(bucket, level)| LevelStatus::new(bucket, level))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// [`share_retry`] against the definition, by brute force: the earliest
    /// wait at which some split of `cost` fits both parts.
    #[rstest]
    #[case::guarantee_fast(3, 10, 4, 5, 1)]
    #[case::pool_fast(1, 3, 10, 6, 0)]
    #[case::both_empty(0, 0, 5, 5, 0)]
    #[case::no_room_in_the_guarantee(0, 7, 0, 4, 2)]
    fn share_retry_is_the_earliest_split(
        #[case] ga: u64,
        #[case] gstep: u64,
        #[case] pa: u64,
        #[case] pstep: u64,
        #[case] offset: u64,
    ) {
        let (gcap, pcap) = (6u64, 5u64);
        // Each part frees one unit every `step` µs after `offset`.
        let g_wait = |k: u64| offset + (k - ga) * gstep;
        let p_wait = |k: u64| (k - pa) * pstep;
        for cost in (ga + pa + 1)..=(gcap + pcap) {
            let wg = |k: u64| if k <= ga { 0 } else { g_wait(k) };
            let wp = |k: u64| if k <= pa { 0 } else { p_wait(k) };
            let brute = (0..=gcap.min(cost))
                .filter(|k| cost - k <= pcap)
                .map(|k| wg(k).max(wp(cost - k)))
                .min()
                .unwrap();
            let got = share_retry(cost, Some((ga, gcap, &g_wait)), (pa, pcap, &p_wait));
            assert_eq!(got, brute, "cost {cost}");
        }
    }
}
