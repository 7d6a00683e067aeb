//! Store tests, one binary.
//!
//! The Redis store joins the backend-conformance suite with
//! `mod conformance; #[cfg(feature = "redis")] mod redis_conformance;` once
//! `conformance.rs` is on this branch.

#[path = "../support/mod.rs"]
mod support;

mod fallback;
#[cfg(feature = "redis")]
mod redis_differential;
#[cfg(feature = "redis")]
mod redis_store;
