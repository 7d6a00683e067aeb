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
pub(crate) fn counts(s: &State, now: Micros, spec: &LimitSpec) -> (Micros, Micros, u64, u64) {
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

/// A sliding-window bucket at one instant.
#[derive(Debug, Clone, Copy)]
pub struct View {
    now: Micros,
    /// Start of the current window, and time elapsed in it.
    start: Micros,
    elapsed: Micros,
    prev: u64,
    curr: u64,
    window: Micros,
    limit: u64,
}

/// Looks at the bucket at `now`.
pub fn view(s: &State, now: Micros, spec: &LimitSpec) -> View {
    let (start, elapsed, prev, curr) = counts(s, now, spec);
    View {
        now,
        start,
        elapsed,
        prev,
        curr,
        window: spec.window,
        limit: spec.limit,
    }
}

impl super::BucketView for View {
    fn available(&self) -> u64 {
        let w = u128::from(self.window);
        let room = (u128::from(self.limit) * w).checked_sub(
            u128::from(self.prev) * (w - u128::from(self.elapsed)) + u128::from(self.curr) * w,
        );
        room.map_or(0, |r| u64::try_from(r / w).unwrap_or(u64::MAX))
    }

    /// Within this window the estimate falls as `prev`'s weight shrinks; if that
    /// is not enough, at the next boundary `curr` becomes `prev` and decays in turn.
    fn retry_after(&self, cost: u64) -> Micros {
        let w = u128::from(self.window);
        let limit = u128::from(self.limit);
        let (cost, prev, curr) = (
            u128::from(cost),
            u128::from(self.prev),
            u128::from(self.curr),
        );
        // This window: need prev·(W−e) <= (limit−cost−curr)·W, i.e. e >= W − ⌊x·W/prev⌋.
        if limit >= cost + curr && prev > 0 {
            let k = (limit - cost - curr) * w / prev;
            if k > 0 {
                let at = u128::from(self.start) + w - k.min(w);
                return micros(at).saturating_sub(self.now);
            }
        }
        // Next window: prev' = curr, curr' = 0; need curr·(W−e') <= (limit−cost)·W.
        let next = u128::from(self.start) + w;
        let k = ((limit - cost) * w)
            .checked_div(curr)
            .map_or(w, |k| k.min(w));
        micros(next + w - k).saturating_sub(self.now)
    }

    /// Full again once the estimate is zero: the end of the next window if the
    /// current one has units, else the end of this one if the previous had any.
    fn reset_after(&self, charged: u64) -> Micros {
        if self.curr + charged > 0 {
            self.start + 2 * self.window - self.now
        } else if self.prev > 0 {
            self.start + self.window - self.now
        } else {
            0
        }
    }
}

fn micros(v: u128) -> Micros {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Counts `cost` in the current window.
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    let (start, _, prev, curr) = counts(s, now, spec);
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
