//! `sliding_window`: a rolling window approximated from two fixed windows.
//!
//! The count over the last `window` is estimated as
//! `prev · (window − elapsed) / window + curr`, where `curr` counts the current
//! epoch-aligned window, `prev` the one before, and `elapsed` is the time since the
//! current window began (Cloudflare's approximation). A bucket admits `cost` iff the
//! estimate plus `cost` stays within `limit`. All of it in integers:
//! `prev·(W−e) + (curr+cost)·W <= limit·W`. O(1) state; it assumes the previous
//! window's units were spread evenly, so it can be off when they were not.

use crate::clock::Micros;
use crate::policy::LimitSpec;

/// Two adjacent windows' counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// Start of the window `curr` counts.
    pub start: Micros,
    /// Units in the window starting at `start`.
    pub curr: u64,
    /// Units in the window before it.
    pub prev: u64,
}

/// The counts as seen from `now`: (window start, elapsed in it, prev, curr).
fn view(s: &State, now: Micros, spec: &LimitSpec) -> (Micros, Micros, u64, u64) {
    let w = spec.window;
    let start = now - now % w;
    if start == s.start {
        (start, now - start, s.prev, s.curr)
    } else if start == s.start + w {
        (start, now - start, s.curr, 0)
    } else if start > s.start {
        (start, now - start, 0, 0)
    } else {
        // The clock went backwards: keep counting in the stored window, at its start
        // (the heaviest weight for `prev`: conservative).
        (s.start, 0, s.prev, s.curr)
    }
}

/// See [`crate::algo`].
pub fn available(s: &State, now: Micros, spec: &LimitSpec) -> u64 {
    let (_, e, prev, curr) = view(s, now, spec);
    let w = u128::from(spec.window);
    let room = (u128::from(spec.limit) * w)
        .checked_sub(u128::from(prev) * (w - u128::from(e)) + u128::from(curr) * w);
    room.map_or(0, |r| u64::try_from(r / w).unwrap_or(u64::MAX))
}

/// Within this window the estimate falls as `prev`'s weight shrinks; if that is not
/// enough, at the next boundary `curr` becomes `prev` and decays in turn.
pub fn retry_after(s: &State, now: Micros, spec: &LimitSpec, cost: u64) -> Micros {
    let (start, _, prev, curr) = view(s, now, spec);
    let w = u128::from(spec.window);
    let limit = u128::from(spec.limit);
    let (cost, prev, curr) = (u128::from(cost), u128::from(prev), u128::from(curr));
    // This window: need prev·(W−e) <= (limit−cost−curr)·W, i.e. e >= W − ⌊x·W/prev⌋.
    if limit >= cost + curr && prev > 0 {
        let k = (limit - cost - curr) * w / prev;
        if k > 0 {
            let at = u128::from(start) + w - k.min(w);
            return micros(at).saturating_sub(now);
        }
    }
    // Next window: prev' = curr, curr' = 0; need curr·(W−e') <= (limit−cost)·W.
    let next = u128::from(start) + w;
    let k = ((limit - cost) * w)
        .checked_div(curr)
        .map_or(w, |k| k.min(w));
    micros(next + w - k).saturating_sub(now)
}

fn micros(v: u128) -> Micros {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Full again once the estimate is zero: the end of the next window if the current
/// one has units, else the end of this one if the previous had any.
pub fn reset_after(s: &State, now: Micros, spec: &LimitSpec, charged: u64) -> Micros {
    let (start, _, prev, curr) = view(s, now, spec);
    if curr + charged > 0 {
        start + 2 * spec.window - now
    } else if prev > 0 {
        start + spec.window - now
    } else {
        0
    }
}

/// Counts `cost` in the current window.
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    let (start, _, prev, curr) = view(s, now, spec);
    *s = State {
        start,
        curr: curr + cost,
        prev,
    };
}

/// Idle once both windows' weight is gone.
pub fn idle_at(s: &State, spec: &LimitSpec) -> Micros {
    if s.curr > 0 {
        s.start + 2 * spec.window
    } else if s.prev > 0 {
        s.start + spec.window
    } else {
        0
    }
}
