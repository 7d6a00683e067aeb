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
fn view(s: &State, now: Micros, spec: &LimitSpec) -> (Micros, u64) {
    let start = now - now % spec.window;
    if start > s.start {
        (start, 0)
    } else {
        (s.start, s.count)
    }
}

/// See [`crate::algo`].
pub fn available(s: &State, now: Micros, spec: &LimitSpec) -> u64 {
    spec.limit.saturating_sub(view(s, now, spec).1)
}

/// Everything comes back at the window's end.
pub fn retry_after(s: &State, now: Micros, spec: &LimitSpec, _cost: u64) -> Micros {
    let (start, _) = view(s, now, spec);
    start + spec.window - now
}

/// Full at the window's end, if anything was taken in it.
pub fn reset_after(s: &State, now: Micros, spec: &LimitSpec, charged: u64) -> Micros {
    let (start, count) = view(s, now, spec);
    if count + charged == 0 {
        0
    } else {
        start + spec.window - now
    }
}

/// Counts `cost` in the window of `now`.
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    let (start, count) = view(s, now, spec);
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
