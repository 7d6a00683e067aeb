//! HTTP integration tests: real servers on `127.0.0.1:0`, real sockets.
//!
//! One test binary (fewer link steps on a small machine) with a module per area.

// These tests drive real servers and `redis-server` processes and wait for
// them against real-time deadlines, which the workspace's ban on
// `Instant::now` (meant for code that should take a `limitree::Clock`) does not
// fit. Once the deadline-poll loops live in one helper, this belongs there.
#![expect(
    clippy::disallowed_methods,
    reason = "deadlines for real processes are real time (Instant::now)"
)]

mod check;
mod cli;
mod connections;
mod errors;
mod framing;
mod health;
mod notify;
#[cfg(feature = "redis")]
mod notify_redis;
mod notify_restart;
#[cfg(feature = "redis")]
mod redis;
/// Real `redis-server` processes on free loopback ports (the library's test
/// support, shared rather than copied).
#[cfg(feature = "redis")]
#[path = "../../../limitree/tests/support/redis.rs"]
#[allow(dead_code)]
mod redis_support;
#[cfg(feature = "redis")]
mod redis_tls;
mod shutdown;
mod support;
