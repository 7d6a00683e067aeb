//! Reading buckets without charging them — one bucket's state, the busiest
//! buckets of a level — and an operator's reset: what the server's
//! introspection API (`/v1/buckets`) and status page show.
//!
//! # One way to read a bucket
//! Every number here comes from a **peek through the store's own decision
//! path**: [`Store::decide`](crate::Store::decide) in [`Mode::Peek`] on the chain of that one bucket
//! ([`Chain::one_bucket`]). So a bucket reads exactly as a `cost: 0` check
//! of it would, in every store, with no second reading of any store's state
//! format to keep in step with `decide.lua` or the memory store.
//!
//! # Bounded listings
//! [`Snapshot::busiest`] asks the store for at most [`SCAN_BUDGET`] of the
//! level's buckets ([`Store::scan_buckets`](crate::Store::scan_buckets), which also bounds its time),
//! peeks each (in rounds of [`PEEKS_IN_FLIGHT`] at once, so the Redis store
//! batches them into few script calls), drops those with nothing used and keeps the
//! busiest `limit`. Past the budget the answer says `truncated`: the busiest
//! of the buckets looked at, not necessarily of the level.

use std::cmp::Ordering;

use arrayvec::ArrayVec;
use futures_util::future::try_join_all;

use crate::chain::{Chain, ChainError};
use crate::clock::Micros;
use crate::decision::{LevelStatus, Mode, Reason};
use crate::limiter::Snapshot;
use crate::policy::{MAX_BY_KEYS, Tree};
use crate::store::{BucketScan, StoreError};

/// Buckets a listing returns unless asked for another number.
pub const DEFAULT_LIST_LIMIT: usize = 20;
/// The most buckets one listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;
/// The most buckets one listing looks at (and peeks).
pub const SCAN_BUDGET: usize = 10_000;
/// Peeks of one listing in flight at once.
pub const PEEKS_IN_FLIGHT: usize = 64;

/// One bucket as a peek saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUsage {
    /// The bucket's values, one per `by` key of its level, in `by` order
    /// (empty for a global level).
    pub values: Vec<String>,
    /// What a `cost: 0` check of it reports now (`allowed`: one more unit fits).
    pub status: LevelStatus,
    /// The most the bucket holds at once: its limit (`burst` for gcra).
    pub capacity: u64,
    /// How long ago the bucket last admitted a charge (denials, peeks and
    /// dry runs do not count); `None` when the store cannot tell (it does
    /// not record admissions: Redis, so far) or the bucket has had none
    /// since it was created, reset or dropped as idle. See
    /// [`LevelOutcome::since_admission`](crate::decision::LevelOutcome::since_admission).
    pub since_admission: Option<Micros>,
}

impl BucketUsage {
    /// Units taken and not yet returned: `capacity - remaining`.
    pub fn used(&self) -> u64 {
        self.capacity.saturating_sub(self.status.remaining)
    }

    /// Busiest first: by the share of its capacity used, then by units used,
    /// then by name.
    fn busier(&self, other: &BucketUsage) -> Ordering {
        let share =
            |a: &BucketUsage, b: &BucketUsage| u128::from(a.used()) * u128::from(b.capacity.max(1));
        share(other, self)
            .cmp(&share(self, other))
            .then(other.used().cmp(&self.used()))
            .then_with(|| self.status.bucket.cmp(&other.status.bucket))
    }
}

/// The busiest buckets of a level ([`Snapshot::busiest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusiestBuckets {
    /// Busiest first; only buckets with something used.
    pub buckets: Vec<BucketUsage>,
    /// Buckets looked at.
    pub scanned: usize,
    /// The store stopped before looking at every bucket of the level (the
    /// scan's count or time budget ran out): `buckets` are the busiest of
    /// those looked at.
    pub truncated: bool,
}

/// What a reset found ([`Snapshot::reset_bucket`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetBucket {
    /// The bucket just before the reset.
    pub before: BucketUsage,
    /// The store held state for it (false: it was fresh already).
    pub removed: bool,
}

/// Why a bucket could not be read or reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The tree has no such level.
    #[error("tree `{tree}` has no level `{level}`; its levels: {}", known.join(", "))]
    UnknownLevel {
        /// The tree.
        tree: String,
        /// What was asked for.
        level: String,
        /// What exists.
        known: Vec<String>,
    },
    /// The values given do not name one bucket of the level.
    #[error("{}", values_message(tree, level, by, *given))]
    WrongValues {
        /// The tree.
        tree: String,
        /// The level.
        level: String,
        /// The level's `by` keys.
        by: Vec<String>,
        /// How many values were given.
        given: usize,
    },
    /// A value is empty or too long.
    #[error(transparent)]
    Value(#[from] ChainError),
    /// The store failed, or cannot list or reset buckets.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn values_message(tree: &str, level: &str, by: &[String], given: usize) -> String {
    if by.is_empty() {
        format!("level `{level}` of tree `{tree}` is not keyed: its one bucket is `*`")
    } else {
        format!(
            "level `{level}` of tree `{tree}` is keyed by {} ({} value{}), but {given} {} given",
            by.join(", "),
            by.len(),
            if by.len() == 1 { "" } else { "s" },
            if given == 1 { "was" } else { "were" },
        )
    }
}

/// The position of the level called `name` in `tree`.
pub fn level_index(tree: &Tree, name: &str) -> Result<usize, InspectError> {
    tree.levels
        .iter()
        .position(|l| l.name == name)
        .ok_or_else(|| InspectError::UnknownLevel {
            tree: tree.name.clone(),
            level: name.to_owned(),
            known: tree.levels.iter().map(|l| l.name.clone()).collect(),
        })
}

impl Snapshot {
    /// Level `level_index` of `tree`'s bucket for `values` (one per `by` key),
    /// as a `cost: 0` check of it reports it now. Charges nothing. (The
    /// memory store, like any peek, creates the bucket if it was absent.)
    pub async fn peek_bucket(
        &self,
        tree: &Tree,
        level_index: usize,
        values: &[&str],
    ) -> Result<BucketUsage, InspectError> {
        let chain = bucket_chain(tree, level_index, values)?;
        let outcome = self.store().decide(&chain, Mode::Peek).await?;
        if outcome.reason == Reason::StoreUnavailable {
            // `on_error` answered: what it says is not the bucket's state.
            return Err(StoreError::Unavailable(
                "the store did not answer, so its buckets cannot be read (on_error decided the peek)"
                    .to_owned(),
            )
            .into());
        }
        let bucket = &chain.buckets[0];
        let Some(level) = outcome.levels.first() else {
            return Err(
                StoreError::Protocol("a peek of one bucket reported no level".to_owned()).into(),
            );
        };
        Ok(BucketUsage {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            status: LevelStatus::new(bucket, level),
            capacity: bucket.spec.capacity(),
            since_admission: level.since_admission,
        })
    }

    /// The busiest `limit` buckets of level `level_index` of `tree` whose
    /// first value starts with `prefix`, busiest first (see the module docs
    /// for the bounds).
    pub async fn busiest(
        &self,
        tree: &Tree,
        level_index: usize,
        prefix: Option<&str>,
        limit: usize,
    ) -> Result<BusiestBuckets, InspectError> {
        let scanned = self
            .store()
            .scan_buckets(BucketScan {
                tree,
                level_index,
                prefix,
                max_buckets: SCAN_BUDGET,
            })
            .await?;
        // In rounds of PEEKS_IN_FLIGHT: the Redis store batches concurrent
        // decisions of a tree into one script call.
        let mut buckets = Vec::new();
        for round in scanned.buckets.chunks(PEEKS_IN_FLIGHT) {
            let peeks = round.iter().map(|values| {
                let values: ArrayVec<&str, MAX_BY_KEYS> =
                    values.iter().map(String::as_str).collect();
                async move { self.peek_bucket(tree, level_index, &values).await }
            });
            buckets.extend(
                try_join_all(peeks)
                    .await?
                    .into_iter()
                    .filter(|usage| usage.used() > 0),
            );
        }
        buckets.sort_unstable_by(BucketUsage::busier);
        buckets.truncate(limit);
        Ok(BusiestBuckets {
            buckets,
            scanned: scanned.buckets.len(),
            truncated: scanned.truncated,
        })
    }

    /// Resets level `level_index` of `tree`'s bucket for `values`: it starts
    /// afresh, full. Returns what it held just before.
    pub async fn reset_bucket(
        &self,
        tree: &Tree,
        level_index: usize,
        values: &[&str],
    ) -> Result<ResetBucket, InspectError> {
        let before = self.peek_bucket(tree, level_index, values).await?;
        let chain = bucket_chain(tree, level_index, values)?;
        let removed = self.store().reset(&chain).await? > 0;
        Ok(ResetBucket { before, removed })
    }
}

/// The one-bucket chain for `values`, once their number is right.
fn bucket_chain<'a>(
    tree: &'a Tree,
    level_index: usize,
    values: &[&'a str],
) -> Result<Chain<'a>, InspectError> {
    let Some(level) = tree.levels.get(level_index) else {
        return Err(InspectError::UnknownLevel {
            tree: tree.name.clone(),
            level: format!("#{level_index}"),
            known: tree.levels.iter().map(|l| l.name.clone()).collect(),
        });
    };
    if values.len() != level.by.len() {
        return Err(InspectError::WrongValues {
            tree: tree.name.clone(),
            level: level.name.clone(),
            by: level.by.clone(),
            given: values.len(),
        });
    }
    Ok(Chain::one_bucket(tree, level_index, values)?)
}
