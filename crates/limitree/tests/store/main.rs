//! Store tests, one binary.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "redis")]
mod redis_differential;
#[cfg(feature = "redis")]
mod redis_store;
