//! Helpers shared by the tests of one binary (and the benches): the test
//! binary includes this with `#[path = "../support/mod.rs"] mod support;`.
//! Anything two test files need lives here, not in either of them.

#![allow(
    dead_code,
    reason = "each test binary and bench that includes this uses a different part"
)]

#[cfg(feature = "redis")]
pub mod redis;

use limitree::Micros;

/// A fixed start time for manual clocks: an ordinary recent instant, so
/// window arithmetic works on realistic magnitudes.
pub const T0: Micros = 1_700_000_000_000_000;

/// Every algorithm, by its config name.
pub const ALGORITHMS: [&str; 4] = ["sliding_log", "sliding_window", "gcra", "fixed_window"];
