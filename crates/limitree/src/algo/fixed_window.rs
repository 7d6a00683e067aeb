//! `fixed_window`: epoch-aligned windows, as envoyproxy/ratelimit counts.
//!
//! Windows are `[k·window, (k+1)·window)` since the Unix epoch, the same on every
//! instance. A bucket admits `cost` iff the window's count plus `cost` stays within
//! `limit`; the count resets at the window's end. Up to `2·limit` units can pass
//! around a boundary — use `sliding_log` or `sliding_window` where that matters.

use crate::clock::Micros;
use crate::policy::LimitSpec;

/// The current window's start and count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// Start of the window `count` belongs to.
    pub start: Micros,
    /// Units taken in that window.
    pub count: u64,
}

/// (start of the window counting at `now`, its count). If the clock went
/// backwards into an earlier window, the stored (later) window keeps counting.
pub(crate) fn window_of(s: &State, now: Micros, spec: &LimitSpec) -> (Micros, u64) {
    let start = now - now % spec.window;
    if start > s.start {
        (start, 0)
    } else {
        (s.start, s.count)
    }
}

/// A fixed-window bucket at one instant.
#[derive(Debug, Clone, Copy)]
pub struct View {
    now: Micros,
    /// Start of the window counting at `now`.
    start: Micros,
    count: u64,
    window: Micros,
    limit: u64,
}

/// Looks at the bucket at `now`.
pub fn view(s: &State, now: Micros, spec: &LimitSpec) -> View {
    let (start, count) = window_of(s, now, spec);
    View {
        now,
        start,
        count,
        window: spec.window,
        limit: spec.limit,
    }
}

impl super::BucketView for View {
    fn available(&self) -> u64 {
        self.limit.saturating_sub(self.count)
    }

    /// Everything comes back at the window's end.
    fn retry_after(&self, _cost: u64) -> Micros {
        self.start + self.window - self.now
    }

    /// Full at the window's end, if anything was taken in it.
    fn reset_after(&self, charged: u64) -> Micros {
        if self.count + charged == 0 {
            0
        } else {
            self.start + self.window - self.now
        }
    }
}

/// Counts `cost` in the window of `now`.
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    let (start, count) = window_of(s, now, spec);
    *s = State {
        start,
        count: count + cost,
    };
}

/// Idle once its window has ended.
pub fn idle_at(s: &State, spec: &LimitSpec) -> Micros {
    if s.count == 0 {
        0
    } else {
        s.start + spec.window
    }
}
