//! Store tests, one binary: the backend-conformance suite stamped out per store
//! (memory, standalone Redis, Redis Cluster), memory-store specifics, property
//! tests against a reference model and between stores, a multi-threaded
//! exactness test, and `on_error` (the fallback store).

#[path = "../support/mod.rs"]
mod support;

mod conformance;
mod conformance_shares;
mod fallback;
mod memory;
mod model;
mod properties;
#[cfg(feature = "redis")]
mod redis_causes;
#[cfg(feature = "redis")]
mod redis_conformance;
#[cfg(feature = "redis")]
mod redis_differential;
#[cfg(feature = "redis")]
mod redis_store;
mod threads;
