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
//! - [`policy`]: trees, levels, limits; TOML parsing and validation.
//! - [`algo`]: the four algorithms as pure functions of (state, now, spec, cost).
//! - [`chain`]: a request's descriptors → the bucket of each level.
//! - [`decision`]: the all-or-nothing rule and the shape of an answer.
//! - [`store`]: the [`Store`] trait (decide a whole chain atomically) and the
//!   in-process [`MemoryStore`].
//! - [`limiter`]: the front door tying them together.
//! - [`clock`]: time, with a manual clock for tests.

#![forbid(unsafe_code)]

pub mod algo;
pub mod chain;
pub mod clock;
pub mod decision;
pub mod limiter;
pub mod policy;
pub mod store;

pub use chain::{Chain, ChainError, Descriptors};
pub use clock::{Clock, ManualClock, Micros, SystemClock};
pub use decision::{ChainOutcome, MAX_COST, Mode, Reason};
pub use limiter::{CheckError, CheckRequest, Decision, LevelStatus, Limiter};
pub use policy::{Algorithm, LimitSpec, Policy, PolicyError, PolicyErrors};
pub use store::{MemoryStore, Store, StoreError};
