//! Time, as the limiter sees it.
//!
//! Every decision takes `now` from a [`Clock`], never from the system directly, so
//! tests drive time by hand ([`ManualClock`]) and never sleep. Time is a count of
//! microseconds since the Unix epoch ([`Micros`]): the resolution Redis `TIME` gives,
//! small enough to be exact in a Lua number (below 2^53 until the year 2255).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, or a span of microseconds.
pub type Micros = u64;

/// One authoritative source of "now" for a store.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in microseconds since the Unix epoch.
    fn now(&self) -> Micros;
}

/// The process clock: the wall time read once at construction, advanced by a
/// monotonic counter (the TSC through `quanta`, where it is stable).
///
/// Why not `SystemTime::now()` per call: reading the counter costs a few
/// nanoseconds where a `clock_gettime` costs tens (it is the largest single cost
/// of a memory-store decision), and a monotonic base means an NTP step of the
/// wall clock can neither free capacity early nor freeze it.
#[derive(Debug, Clone)]
pub struct SystemClock {
    clock: quanta::Clock,
    /// The raw counter at construction.
    anchor: u64,
    anchor_wall: Micros,
}

impl SystemClock {
    /// Anchors a clock at the current wall time.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place the wall clock is read: everything else takes a Clock"
    )]
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let anchor = clock.raw();
        // A clock before 1970 is a broken machine; treat it as the epoch rather
        // than panicking.
        let anchor_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, duration_to_micros);
        SystemClock {
            clock,
            anchor,
            anchor_wall,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        let elapsed_ns = self.clock.delta_as_nanos(self.anchor, self.clock.raw());
        self.anchor_wall.saturating_add(elapsed_ns / 1_000)
    }
}

/// A clock that moves only when told to. Cloning shares the same time, so a test
/// can hand one clone to a store and advance another.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start` microseconds since the epoch.
    pub fn new(start: Micros) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(duration_to_micros(by), Ordering::SeqCst);
    }

    /// Moves time forward by `by` microseconds.
    pub fn advance_micros(&self, by: Micros) {
        self.now.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the time to `at` (it may go backwards: stores must tolerate that).
    pub fn set(&self, at: Micros) {
        self.now.store(at, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.now.load(Ordering::SeqCst)
    }
}

/// Whole microseconds in `d`, saturating at `u64::MAX`.
pub fn duration_to_micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Milliseconds for a span of microseconds, rounded **up**: a retry time reported in
/// milliseconds must never be early.
pub fn micros_to_millis_ceil(us: Micros) -> u64 {
    us.div_ceil(1000)
}
