//! HTTP integration tests: real servers on `127.0.0.1:0`, real sockets.
//!
//! One test binary (fewer link steps on a small machine) with a module per area.

mod check;
mod cli;
mod errors;
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
