//! Fair sharing under a parent's cap (HTB-style guaranteed shares plus
//! borrowing).
//!
//! A keyed level (the **child**) may give some of its values a guaranteed
//! share of the level directly above it (the **parent**, global or keyed).
//! The limit `L` of each parent bucket (the global one, or each team's of a
//! parent `by = ["team"]`) is then split into parts, each an ordinary bucket
//! of the parent's algorithm and window, and each parent bucket has its own:
//! - one **guarantee** per guaranteed value, holding its share `g`;
//! - the **pool**, holding what is left, `L − G` (`G`: the sum of the shares).
//!
//! A request whose child value has a guarantee takes from its guarantee first
//! and the rest from the pool; any other request (a value without a share, or
//! no child bucket at all) takes only from the pool. The parent's bucket has
//! no state of its own: its parts are it. Every bucket of a keyed parent is
//! split for the same values, unless the child repeats the parent's `by`
//! keys: a guarantee then lives only in the parent bucket its values name. A
//! bucket an override of the parent matches is split from the override's
//! limit. Such buckets have splits of their own ([`Shares::per_bucket`]).
//! Since the parts' limits sum to `L`, the
//! parent never admits more than a bucket of `L` would, and a value within its
//! guarantee is never denied for what other values took. The child's own limit
//! stays each value's ceiling. How one request is split is
//! [`crate::decision::share_verdict`].
//!
//! A tree may have several: a level between two splits is a child of the
//! one above (its values hold guarantees there) and a parent of the one
//! below (its buckets are split, and their parts, whose limits sum to its
//! own, are its ceiling). Each split is decided on its own, in chain order.

use super::{Algorithm, LimitSpec};
use crate::values::ValuesIndex;

/// The shares one tree gives: which level is split for which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    /// Index of the parent level whose limit (each bucket's, for a keyed
    /// one) is split.
    pub parent: usize,
    /// Index of the child level (keyed) whose values hold the guarantees.
    pub child: usize,
    /// The sum of the guarantees (`G ≤ L`).
    pub reserved: u64,
    /// The pool: the parent's spec with what the guarantees leave. Its limit
    /// may be 0 (everything reserved): then it never has room.
    pub pool: LimitSpec,
    /// One per guaranteed value, in the child's override order.
    pub parts: Vec<SharePart>,
    /// A keyed parent's buckets split otherwise than this one (the split of
    /// every other bucket), each by its values (in the parent's `by`
    /// order): one the parent's `overrides` give a limit of its own (its
    /// pool and parts cut from the override's spec), and, when the child
    /// repeats the parent's `by` keys, one that holds guarantees of its own
    /// (those of the child values that name it; every other bucket then
    /// holds none, all pool). Empty otherwise (and in these splits
    /// themselves). Set by [`Shares::set_per_bucket`].
    pub per_bucket: Vec<(Vec<String>, Shares)>,
    /// Where each of `parts` stands, by its values; built by
    /// [`Shares::split`] (a policy hands out its shares by shared reference,
    /// so `parts` does not change after).
    part_index: ValuesIndex,
    /// Where each of `per_bucket` stands, by its values.
    per_bucket_index: ValuesIndex,
}

/// One value's guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePart {
    /// The child's descriptor values, in its `by` order.
    pub values: Vec<String>,
    /// The guaranteed units per window.
    pub guaranteed: u64,
    /// The guarantee's bucket: the parent's algorithm and window, limit `g`.
    pub spec: LimitSpec,
}

impl Shares {
    /// Splits `parent` for `guarantees` (values, share), in order. The caller
    /// checks `sum ≤ parent.limit` (and reports it otherwise: the pool then
    /// saturates at 0 rather than panic). A gcra parent's `burst` is split in
    /// proportion (rounded down, so the parts never hold more than it); the
    /// pool gets what is left of it, or nothing when its limit is 0.
    pub fn split(
        parent_index: usize,
        child_index: usize,
        parent: &LimitSpec,
        guarantees: Vec<(Vec<String>, u64)>,
    ) -> Shares {
        let reserved: u64 = guarantees.iter().map(|(_, g)| g).sum();
        let burst_of = |g: u64| -> u64 {
            if parent.algorithm == Algorithm::Gcra {
                let b = u128::from(g) * u128::from(parent.burst) / u128::from(parent.limit.max(1));
                u64::try_from(b).unwrap_or(u64::MAX)
            } else {
                g
            }
        };
        let parts: Vec<SharePart> = guarantees
            .into_iter()
            .map(|(values, guaranteed)| SharePart {
                values,
                guaranteed,
                spec: LimitSpec::new(
                    parent.algorithm,
                    guaranteed,
                    parent.window,
                    burst_of(guaranteed),
                ),
            })
            .collect();
        let pool_limit = parent.limit.saturating_sub(reserved);
        let pool_burst = if pool_limit == 0 {
            0
        } else {
            parent
                .burst
                .saturating_sub(parts.iter().map(|p| p.spec.burst).sum())
        };
        Shares {
            parent: parent_index,
            child: child_index,
            reserved,
            pool: LimitSpec::new(parent.algorithm, pool_limit, parent.window, pool_burst),
            part_index: ValuesIndex::new(parts.iter().map(|p| p.values.as_slice())),
            parts,
            per_bucket: Vec::new(),
            per_bucket_index: ValuesIndex::default(),
        }
    }

    /// Sets [`Shares::per_bucket`] (and its index).
    pub fn set_per_bucket(&mut self, per_bucket: Vec<(Vec<String>, Shares)>) {
        self.per_bucket_index = ValuesIndex::new(per_bucket.iter().map(|(v, _)| v.as_slice()));
        self.per_bucket = per_bucket;
    }

    /// The split of the parent's bucket with `values` (see
    /// [`Shares::per_bucket`]).
    pub fn for_values(&self, values: &[&str]) -> &Shares {
        self.own_split(values).unwrap_or(self)
    }

    /// The split of the parent's bucket with `values` when it is its own
    /// ([`Shares::per_bucket`]): such a bucket always gets its own state, as
    /// an overridden one does (never the memory store's overflow bucket).
    pub fn own_split(&self, values: &[&str]) -> Option<&Shares> {
        if self.per_bucket.is_empty() {
            return None;
        }
        let at = self
            .per_bucket_index
            .find(values, self.per_bucket.iter().map(|(v, _)| v.as_slice()))?;
        Some(&self.per_bucket[at].1)
    }

    /// Whether `other` splits every bucket as this does: the same values
    /// with the same guarantees, in order, and the same pools (per override
    /// too). A reload between two such splits keeps their parts.
    pub fn same_layout(&self, other: &Shares) -> bool {
        let one = |a: &Shares, b: &Shares| {
            a.pool.limit == b.pool.limit
                && a.parts.len() == b.parts.len()
                && a.parts
                    .iter()
                    .zip(&b.parts)
                    .all(|(x, y)| x.values == y.values && x.guaranteed == y.guaranteed)
        };
        one(self, other)
            && self.per_bucket.len() == other.per_bucket.len()
            && self
                .per_bucket
                .iter()
                .zip(&other.per_bucket)
                .all(|((va, a), (vb, b))| va == vb && one(a, b))
    }

    /// The guarantee of the child bucket with `values`, by index in [`Shares::parts`].
    pub fn part_for(&self, values: &[&str]) -> Option<usize> {
        self.part_index
            .find(values, self.parts.iter().map(|p| p.values.as_slice()))
    }
}
