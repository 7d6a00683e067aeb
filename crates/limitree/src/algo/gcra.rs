//! `gcra`: the generic cell rate algorithm — a token bucket kept as one timestamp.
//!
//! Each unit "costs" one emission interval `T = window / limit` (rounded up to the
//! microsecond, so the sustained rate never exceeds `limit` per `window`). The
//! state is the theoretical arrival time `tat`: when the bucket would be full
//! again. A request of `cost` fits iff `max(tat, now) + cost·T <= now + burst·T`,
//! i.e. up to `burst` units at once, then one unit per `T`. Over any span `d` at
//! most `burst + d / T` units pass.

use crate::clock::Micros;
use crate::policy::LimitSpec;

/// The theoretical arrival time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// When the bucket is full again; at or before `now` it is full.
    pub tat: Micros,
}

/// A gcra bucket at one instant, with the emission interval computed once.
#[derive(Debug, Clone, Copy)]
pub struct View {
    now: Micros,
    tat: Micros,
    interval: Micros,
    burst: u64,
}

/// Looks at the bucket at `now`.
pub fn view(s: &State, now: Micros, spec: &LimitSpec) -> View {
    View {
        now,
        tat: s.tat,
        interval: spec.emission_interval(),
        burst: spec.burst,
    }
}

impl super::BucketView for View {
    fn available(&self) -> u64 {
        let base = self.tat.max(self.now);
        (self.now + self.burst * self.interval).saturating_sub(base) / self.interval
    }

    /// The earliest `t` with `tat + cost·T <= t + burst·T`.
    fn retry_after(&self, cost: u64) -> Micros {
        (self.tat + cost * self.interval).saturating_sub(self.burst * self.interval + self.now)
    }

    /// Full again at `tat` (after pushing it by the charged units).
    fn reset_after(&self, charged: u64) -> Micros {
        let tat = if charged > 0 {
            self.tat.max(self.now) + charged * self.interval
        } else {
            self.tat
        };
        tat.saturating_sub(self.now)
    }
}

/// Pushes `tat` by `cost` intervals.
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    s.tat = s.tat.max(now) + cost * spec.emission_interval();
}

/// Idle once `tat` has passed.
pub fn idle_at(s: &State, _spec: &LimitSpec) -> Micros {
    s.tat
}
