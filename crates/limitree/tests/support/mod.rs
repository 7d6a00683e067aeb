//! Helpers shared by the tests of one binary (and the benches): the test
//! binary includes this with `#[path = "../support/mod.rs"] mod support;`.
//! Anything two test files need lives here, not in either of them.

#![allow(
    dead_code,
    reason = "each test binary and bench that includes this uses a different part"
)]

#[cfg(feature = "redis")]
pub mod redis;

use std::time::{Duration, Instant};

use limitree::Micros;

/// A fixed start time for manual clocks: an ordinary recent instant, so
/// window arithmetic works on realistic magnitudes.
pub const T0: Micros = 1_700_000_000_000_000;

/// Every algorithm, by its config name.
pub const ALGORITHMS: [&str; 4] = ["sliding_log", "sliding_window", "gcra", "fixed_window"];

/// Calls `attempt` until it succeeds, every `every`, for at most `within`;
/// then returns its last error. The one deadline-poll loop of the tests, for
/// waiting on something outside the process — a `redis-server` starting or
/// coming back — which no test clock can hurry: the waits are real for that
/// reason.
pub fn eventually<T, E>(
    within: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + within;
    loop {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// [`eventually`] for an async `attempt` (waiting with real tokio time, for
/// the same reason).
pub async fn eventually_async<T, E, F>(
    within: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
