//! limitree: hierarchical rate limiting, exact and all-or-nothing.
//!
//! Every request walks a chain of limits (global → category → …) and is admitted
//! only if *every* level on its chain has room. If it is admitted, every level is
//! charged; if it is denied, **no level is charged**.
//!
//! ```
//! use std::sync::Arc;
//! use limitree::{CheckRequest, Limiter, MemoryStore, Policy};
//!
//! # tokio_test_block_on(async {
//! let policy = Arc::new(Policy::default_notifications());
//! let store = Arc::new(MemoryStore::new(&policy));
//! let limiter = Limiter::new(policy, store);
//! let decision = limiter
//!     .check(CheckRequest {
//!         tree: None,
//!         descriptors: &[("category", "errors")],
//!         cost: 1,
//!         dry_run: false,
//!     })
//!     .await
//!     .unwrap();
//! assert!(decision.allowed);
//! assert_eq!(decision.levels[1].remaining, 9);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     // The memory store's futures are ready at once: poll once.
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     match f.as_mut().poll(&mut cx) { std::task::Poll::Ready(v) => v, _ => unreachable!() }
//! # }
//! ```
//!
//! # Layout
//! Where each thing is decided, parsed or serialized — one place each:
//! - [`policy`]: the config model (trees, levels, limits, overrides, shares)
//!   and its validation; parsing TOML in `policy/parse.rs`, durations
//!   (`30m`, `250ms`) in `policy/duration.rs`, the error type in
//!   `policy/error.rs`. A tree's [`Selection`] says how requests pick its
//!   buckets: native (TOML) trees, or envoyproxy/ratelimit domains.
//!   - [`policy::envoy`]: envoyproxy/ratelimit YAML — parsing and validation
//!     (`load.rs`, `yaml.rs`), descriptor matching and `replaces`
//!     (`mod.rs`), and a domain as a tree (`tree.rs`:
//!     [`Policy::from_envoy_domains`]; each counted rule a level; the tree
//!     keeps its domain for matching).
//! - [`algo`]: the four algorithms as pure functions of (state, now, spec,
//!   cost) → [`algo::Verdict`], one file each; `algo/tests.rs` holds their
//!   named step scripts.
//! - [`chain`]: a request's descriptors → its [`Chain`]: the
//!   [`chain::Bucket`] of each level (which override applies is decided
//!   here), **each with its own cost**. Native trees take one descriptor map
//!   ([`policy::Tree::chain`]); a call of several descriptors (Envoy's
//!   `ShouldRateLimit`, per-descriptor `hits_addend`) goes through
//!   [`policy::Tree::chain_for_descriptors`], which matches Envoy rules,
//!   merges descriptors that land on one bucket (costs summed), orders the
//!   buckets for locking and says what each descriptor landed on
//!   ([`Target`]). Costs live on buckets so that one atomic decision can
//!   charge each matched limit what its own descriptor asks.
//! - [`decision`]: **the** all-or-nothing rule ([`ChainOutcome::combine`],
//!   the one pure function every store applies: per-bucket costs, cost-0
//!   buckets reported but never charged, blocking rules) and the answer's
//!   shape ([`Decision`], [`LevelStatus`]); its module docs list the stages
//!   of a level's record.
//! - [`store`]: the [`Store`] trait (decide a whole chain atomically) and
//!   [`StoreError`];
//!   - [`store::memory`]: the in-process [`MemoryStore`] (bucket locks,
//!     `max_buckets` and the overflow bucket, `expire_idle`);
//!   - [`store::fallback`]: `on_error` — the answer while the shared store
//!     fails (and the errors that are bugs, passed through);
//!   - `store::redis` (feature `redis`): the Redis store. Bucket keys in
//!     `keys.rs`; the script call — request encoding (a cost per level),
//!     reply decoding, and the constants shared with `decide.lua`, which
//!     sits beside it — in `protocol.rs`; concurrent decisions batched into
//!     one call in `batch.rs`; connections in `connection.rs`; what a Redis
//!     failure was (refused, authentication, TLS, LOADING, CLUSTERDOWN) in
//!     `cause.rs`; configuration and URLs in `config.rs`.
//! - [`limiter`]: the front door: request → chain → store → [`Decision`]
//!   ([`Limiter::check`] for one descriptor map and cost,
//!   [`Snapshot::check_descriptors`](limiter::Snapshot::check_descriptors) for a call of
//!   several descriptors).
//! - [`inspect`]: reading buckets without charging them (a peek through the
//!   store's decision path), the busiest buckets of a level
//!   ([`Store::scan_buckets`], bounded), and an operator's reset
//!   ([`Store::reset`]): what the introspection API shows.
//! - [`clock`]: time, with a manual clock for tests.

#![forbid(unsafe_code)]

pub mod algo;
pub mod chain;
pub mod clock;
pub mod decision;
pub mod inline_vec;
pub mod inspect;
pub mod limiter;
pub mod policy;
pub mod store;
mod values;

pub use chain::{BlockedRule, BucketSet, Chain, ChainError, Descriptors, Target};
pub use clock::{Clock, ManualClock, Micros, SystemClock};
pub use decision::{Admission, ChainOutcome, Decision, LevelStatus, MAX_COST, Mode, Reason};
pub use limiter::{CheckError, CheckRequest, Limiter, Snapshot};
pub use policy::{Algorithm, LimitSpec, Policy, PolicyError, PolicyErrors, Selection};
pub use store::{MemoryStore, Store, StoreError};
