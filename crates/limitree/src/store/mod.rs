//! Where bucket state lives, and the one operation every store provides: decide a
//! whole chain atomically.
//!
//! The seam is deliberately one call per chain ([`Store::decide`]): a store that
//! checked levels one by one and charged them in another step would let concurrent
//! requests slip between the two (the over-admission limitador shows). The memory
//! store decides under the chain's bucket locks; the Redis store in one script.

pub mod fallback;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use memory::MemoryStore;

use crate::chain::Chain;
use crate::decision::{ChainOutcome, Mode};
use crate::policy::{Policy, Tree};

/// A boxed, sendable future (what object-safe async trait methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store was not reachable or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer within its deadline.
    #[error("store did not answer within {0} ms")]
    Timeout(u64),
    /// The store did not answer within its deadline while not connected, and
    /// its last attempt to connect had failed with `cause` (for Redis: refused,
    /// authentication, TLS, …): the call waited on another's attempt.
    #[error("store did not answer within {timeout_ms} ms: {cause}")]
    TimeoutConnecting {
        /// The deadline, in milliseconds.
        timeout_ms: u64,
        /// Why the last connection attempt failed.
        cause: String,
    },
    /// The chain's tree is not one the store was built for (the store and the
    /// limiter were given different policies).
    #[error("the store does not know tree `{0}`")]
    UnknownTree(String),
    /// The store broke its own protocol: its reply does not decode, or
    /// contradicts the rules every store shares (for Redis: `decide.lua` and
    /// the Rust decoder disagree). A bug, not an outage: it is logged with
    /// `tracing::error!` where it is found, and
    /// [`FallbackStore`](fallback::FallbackStore) passes it through rather than
    /// answering it with `on_error` as if the store were down.
    #[error("store protocol violated (a bug): {0}")]
    Protocol(String),
    /// The store cannot do this (it has no way to list or reset buckets);
    /// names what was asked.
    #[error("the {store} store cannot {what}")]
    Unsupported {
        /// The store's [`Store::kind`].
        store: &'static str,
        /// What it was asked to do (`list buckets`, `reset buckets`).
        what: &'static str,
    },
}

/// What [`Store::scan_buckets`] is asked for: the live buckets of one keyed
/// level, looked at within a budget.
#[derive(Debug, Clone, Copy)]
pub struct BucketScan<'a> {
    /// The tree.
    pub tree: &'a Tree,
    /// The level's position in `tree.levels`.
    pub level_index: usize,
    /// Only buckets whose first value starts with this.
    pub prefix: Option<&'a str>,
    /// At most this many buckets are returned; past it the scan stops and
    /// says it was truncated.
    pub max_buckets: usize,
}

/// What a [`BucketScan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScannedBuckets {
    /// Each bucket's values, in the level's `by` order (one empty list for a
    /// global level).
    pub buckets: Vec<Vec<String>>,
    /// The scan stopped before looking at every bucket of the level (its
    /// count or time budget ran out): there may be more.
    pub truncated: bool,
}

impl StoreError {
    /// The variant as a fixed, lower-case word (`unavailable`, `timeout`,
    /// `timeout_connecting`, `unknown_tree`, `protocol`): a bounded label for
    /// metrics, where the message itself (addresses, causes) would not be.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout(_) => "timeout",
            StoreError::TimeoutConnecting { .. } => "timeout_connecting",
            StoreError::UnknownTree(_) => "unknown_tree",
            StoreError::Protocol(_) => "protocol",
            StoreError::Unsupported { .. } => "unsupported",
        }
    }
}

/// Shared bucket state that decides chains atomically.
pub trait Store: Send + Sync + fmt::Debug {
    /// Decides `chain` in `mode`, all-or-nothing: either every non-shadow
    /// bucket has room for its own [`cost`](crate::chain::Bucket::cost) (and no
    /// [blocking rule](Chain::blocked) denies) and, in [`Mode::Commit`], every
    /// bucket with room is charged its cost, or nothing is. A bucket of cost 0
    /// is reported, never charged, never denies. Atomic with respect to every
    /// other call on this store (and, for a shared store, on every instance).
    /// [`ChainOutcome::combine`] is the rule.
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>>;

    /// Whether the store can decide right now (for `/readyz`).
    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Drops buckets that have gone idle; returns how many. Stores whose state
    /// expires by itself (Redis TTLs) do nothing.
    fn expire_idle(&self) -> usize {
        0
    }

    /// A short name for logs and metrics (`memory`, `redis`).
    fn kind(&self) -> &'static str;

    /// The buckets of one level that hold state, at most
    /// `scan.max_buckets` of them and within a time budget of the store's
    /// choosing, in no particular order (for the introspection API; see
    /// [`crate::inspect`]). Reads state, never changes it. A store that keeps
    /// no list of its buckets answers [`StoreError::Unsupported`].
    fn scan_buckets<'a>(
        &'a self,
        scan: BucketScan<'a>,
    ) -> BoxFuture<'a, Result<ScannedBuckets, StoreError>> {
        let _ = scan;
        let store = self.kind();
        Box::pin(std::future::ready(Err(StoreError::Unsupported {
            store,
            what: "list buckets",
        })))
    }

    /// Forgets every bucket of `chain` (they start afresh: full), atomically
    /// per bucket; returns how many held state. An operator's reset, not a
    /// decision: nothing is checked.
    fn reset<'a>(&'a self, chain: &'a Chain<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        let _ = chain;
        let store = self.kind();
        Box::pin(std::future::ready(Err(StoreError::Unsupported {
            store,
            what: "reset buckets",
        })))
    }

    /// For a reloaded policy (`old` was in force): the store that decides `policy`'s chains,
    /// keeping the state of every bucket whose tree, level name, `by` keys
    /// and algorithm are unchanged, or `None` when this store serves any
    /// policy as it is (its state is not laid out by policy: Redis, whose
    /// keys name the tree, level, algorithm and values). The returned store
    /// shares the kept state with this one, so decisions still running on
    /// this store count in the same buckets. See
    /// [`Limiter::reload`](crate::Limiter::reload). A store that is kept
    /// may still note what the reload changed (Redis: which fair-sharing
    /// splits to carry over).
    fn for_policy(&self, old: &Policy, policy: &Policy) -> Option<std::sync::Arc<dyn Store>> {
        let _ = (old, policy);
        None
    }
}
