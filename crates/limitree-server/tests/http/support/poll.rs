//! The one way to wait for something real (a socket, a child process, a
//! `redis-server`, a task on another thread) to happen: poll it, bounded.
//!
//! Not for letting time pass in the logic under test: the limiter runs on a
//! `ManualClock` that a test advances itself.

use std::time::{Duration, Instant};

/// The bound for real I/O whose timing a test does not assert (a delivery, a
/// child's exit): generous, for a loaded two-core machine.
pub const SOON: Duration = Duration::from_secs(15);

/// How often a condition is looked at again.
const EVERY: Duration = Duration::from_millis(10);

/// What one look at a condition found: done (with what it yields), or not yet
/// (with, for a [`Result`], what was seen instead, for the timeout message).
pub trait Look {
    type Output;
    fn done(self) -> Result<Self::Output, Option<String>>;
}

impl Look for bool {
    type Output = ();
    fn done(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Look for Option<T> {
    type Output = T;
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Look for Result<T, String> {
    type Output = T;
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Looks at `look` (an `async || …` closure) every 10 ms until it is done and returns what it yields;
/// fails the test, naming `what` and the last thing seen, if that takes longer
/// than `within` (real time: what is waited for runs on real time too).
pub async fn eventually<L: Look>(
    what: &str,
    within: Duration,
    mut look: impl AsyncFnMut() -> L,
) -> L::Output {
    let deadline = Instant::now() + within;
    loop {
        let seen = match look().await.done() {
            Ok(output) => return output,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}{}",
            seen.map(|s| format!(": {s}")).unwrap_or_default()
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// [`eventually`] for code that is not async (a child process's exit, a
/// `redis-server` starting): the same bound and message, blocking the thread
/// between looks.
pub fn eventually_blocking<L: Look>(
    what: &str,
    within: Duration,
    mut look: impl FnMut() -> L,
) -> L::Output {
    let deadline = Instant::now() + within;
    loop {
        let seen = match look().done() {
            Ok(output) => return output,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}{}",
            seen.map(|s| format!(": {s}")).unwrap_or_default()
        );
        std::thread::sleep(EVERY);
    }
}
