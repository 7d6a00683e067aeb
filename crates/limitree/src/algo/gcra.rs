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

/// The theoretical arrival time, and the emission interval it was counted in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// When the bucket is full again; at or before `now` it is full.
    pub tat: Micros,
    /// The emission interval `tat` was pushed by (0: never charged). A policy
    /// reload can change the interval (a new limit or window) under a kept
    /// bucket: [`rescale`] then carries its debt over.
    pub interval: Micros,
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

    /// `cost <= available()` without the division: `⌊x / T⌋ >= cost` iff
    /// `x >= cost·T` (`T >= 1`). `cost·T` stays below 2^53 for a cost within
    /// the burst (the policy bounds `burst·T`); a larger cost saturates and
    /// does not fit, as it does not by `available()`.
    #[inline]
    fn fits(&self, cost: u64) -> bool {
        let base = self.tat.max(self.now);
        let room = (self.now + self.burst * self.interval).saturating_sub(base);
        cost.saturating_mul(self.interval) <= room
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
    let interval = spec.emission_interval();
    s.tat = s.tat.max(now) + cost * interval;
    s.interval = interval;
}

/// Carries a debt counted at another emission interval (a reload changed the
/// level's limit or window) over to `spec`'s: what is still owed at `now`, in
/// whole units — a partly repaid unit counts as owed, so a lower limit never
/// admits early — is owed at the new interval. Without it a kept `tat` would
/// be read at the new interval as a different number of units: 8 of 10 taken,
/// then a limit of 5 read it as 4 of 5 and admitted one more. A bucket owing
/// nothing is left as it is (the next charge sets the interval). `decide.lua`
/// does the same when it loads a bucket.
pub fn rescale(s: &mut State, now: Micros, spec: &LimitSpec) {
    let interval = spec.emission_interval();
    if s.interval == 0 || s.interval == interval || s.tat <= now {
        return;
    }
    let owed = (s.tat - now).div_ceil(s.interval);
    s.tat = now + owed * interval;
    s.interval = interval;
}

/// Idle once `tat` has passed.
pub fn idle_at(s: &State, _spec: &LimitSpec) -> Micros {
    s.tat
}
