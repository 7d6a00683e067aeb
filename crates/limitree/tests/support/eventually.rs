//! The one deadline-poll loop of the tests, sync and async.
//!
//! A module of `redis.rs` (`support::redis::eventually`), not of `mod.rs`:
//! the server crate's tests include `redis.rs` alone, and its Redis helpers
//! need this too; every wait it serves is for a real `redis-server`.

#![expect(
    clippy::disallowed_methods,
    reason = "it waits for real redis-server processes, on real time"
)]

use std::time::{Duration, Instant};

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
