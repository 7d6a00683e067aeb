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

/// See [`crate::algo`].
pub fn available(s: &State, now: Micros, spec: &LimitSpec) -> u64 {
    let t = spec.emission_interval();
    let base = s.tat.max(now);
    (now + spec.burst * t).saturating_sub(base) / t
}

/// The earliest `t` with `tat + cost·T <= t + burst·T`.
pub fn retry_after(s: &State, now: Micros, spec: &LimitSpec, cost: u64) -> Micros {
    let t = spec.emission_interval();
    (s.tat + cost * t).saturating_sub(spec.burst * t + now)
}

/// Full again at `tat` (after pushing it by the charged units).
pub fn reset_after(s: &State, now: Micros, spec: &LimitSpec, charged: u64) -> Micros {
    let tat = if charged > 0 {
        s.tat.max(now) + charged * spec.emission_interval()
    } else {
        s.tat
    };
    tat.saturating_sub(now)
}

/// Pushes `tat` by `cost` intervals.
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    s.tat = s.tat.max(now) + cost * spec.emission_interval();
}

/// Idle once `tat` has passed.
pub fn idle_at(s: &State, _spec: &LimitSpec) -> Micros {
    s.tat
}
