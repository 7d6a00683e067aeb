//! The four algorithms, as pure functions of (state, now, spec, cost).
//!
//! Each algorithm module has the same shape:
//! - `view(state, now, spec)`: the bucket as seen at `now` (a [`BucketView`]),
//!   which answers
//!   - `available()`: units that could be taken now;
//!   - `retry_after(cost)`: for a `cost` that does not fit now but fits the
//!     capacity, the exact wait until it fits if nothing else arrives — rounded
//!     up, never early;
//!   - `reset_after(charged)`: the wait until the bucket is full again, after
//!     `charged` more units are taken now (0: as it stands);
//! - `charge(state, now, spec, cost)`: record `cost` units taken now;
//! - `idle_at(state, spec)`: when the state becomes indistinguishable from a fresh
//!   bucket (it can be dropped).
//!
//! A request of cost `c` fits iff `c <= available`: every algorithm keeps that
//! identity, so a peek (how much is left?) and a decision (does `c` fit?) never
//! disagree. [`decide`] turns these into a [`Verdict`]; stores call it for every
//! bucket of a chain, then [`charge`] the buckets only if the whole chain fits.
//!
//! Time is in microseconds. Arithmetic that could exceed `u64` is done in `u128`.
//! The policy keeps every product below 2^53 so that the Redis store's Lua
//! implementation computes the same integers.

pub mod carry;
pub mod fixed_window;
pub mod gcra;
pub mod sliding_log;
pub mod sliding_window;

use crate::clock::Micros;
use crate::policy::{Algorithm, LimitSpec};

/// The state of one bucket, for whichever algorithm its level uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketState {
    /// See [`sliding_log`].
    SlidingLog(sliding_log::State),
    /// See [`sliding_window`].
    SlidingWindow(sliding_window::State),
    /// See [`gcra`].
    Gcra(gcra::State),
    /// See [`fixed_window`].
    FixedWindow(fixed_window::State),
}

impl BucketState {
    /// A bucket that has seen nothing.
    pub fn fresh(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::SlidingLog => BucketState::SlidingLog(sliding_log::State::default()),
            Algorithm::SlidingWindow => {
                BucketState::SlidingWindow(sliding_window::State::default())
            }
            Algorithm::Gcra => BucketState::Gcra(gcra::State::default()),
            Algorithm::FixedWindow => BucketState::FixedWindow(fixed_window::State::default()),
        }
    }

    /// Which algorithm this state belongs to.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            BucketState::SlidingLog(_) => Algorithm::SlidingLog,
            BucketState::SlidingWindow(_) => Algorithm::SlidingWindow,
            BucketState::Gcra(_) => Algorithm::Gcra,
            BucketState::FixedWindow(_) => Algorithm::FixedWindow,
        }
    }

    /// Starts afresh if the spec's algorithm changed (a reloaded policy).
    pub fn conform(&mut self, spec: &LimitSpec) {
        if self.algorithm() != spec.algorithm {
            *self = BucketState::fresh(spec.algorithm);
        }
    }
}

/// What one bucket says about a request of some cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The cost fits now.
    pub allowed: bool,
    /// Units that could be taken now, before this request.
    pub available: u64,
    /// Units left after this request if it is admitted; `available` otherwise.
    pub remaining: u64,
    /// Wait until the bucket is full again (after this request, if admitted).
    pub reset_after: Micros,
    /// Wait until the bucket is full again as it stands (nothing charged).
    pub reset_after_now: Micros,
    /// Denied but possible later: the exact wait until it fits.
    pub retry_after: Option<Micros>,
    /// The cost exceeds what this bucket can ever hold.
    pub insufficient: bool,
}

/// A bucket as seen at one instant, for one algorithm: the window arithmetic (and
/// gcra's emission interval, a division) is done once when the view is taken, and
/// every answer below reads from it.
pub trait BucketView {
    /// Units that could be taken now.
    fn available(&self) -> u64;
    /// Wait until `cost` fits, for `available < cost <= capacity`.
    fn retry_after(&self, cost: u64) -> Micros;
    /// Wait until the bucket is full, after `charged` units taken now.
    fn reset_after(&self, charged: u64) -> Micros;
    /// `cost <= available()`; an algorithm may answer it more cheaply (gcra
    /// without dividing by its interval).
    #[inline]
    fn fits(&self, cost: u64) -> bool {
        cost <= self.available()
    }
}

/// Calls `$body` with the view of `$state` at `$now`, whatever its algorithm.
macro_rules! with_view {
    ($state:expr, $now:expr, $spec:expr, |$v:ident| $body:expr) => {
        match $state {
            BucketState::SlidingLog(s) => {
                let $v = sliding_log::view(s, $now, $spec);
                $body
            }
            BucketState::SlidingWindow(s) => {
                let $v = sliding_window::view(s, $now, $spec);
                $body
            }
            BucketState::Gcra(s) => {
                let $v = gcra::view(s, $now, $spec);
                $body
            }
            BucketState::FixedWindow(s) => {
                let $v = fixed_window::view(s, $now, $spec);
                $body
            }
        }
    };
}

/// Calls `f` with the view of `state` at `now`, whatever its algorithm (for
/// answers that combine two buckets, such as a shared parent's parts).
pub fn with_view<R>(
    state: &BucketState,
    now: Micros,
    spec: &LimitSpec,
    f: impl FnOnce(&dyn BucketView) -> R,
) -> R {
    with_view!(state, now, spec, |v| f(&v))
}

/// Units that could be taken now.
pub fn available(state: &BucketState, now: Micros, spec: &LimitSpec) -> u64 {
    with_view!(state, now, spec, |v| v.available())
}

/// Wait until `cost` fits, for `available < cost <= capacity`.
pub fn retry_after(state: &BucketState, now: Micros, spec: &LimitSpec, cost: u64) -> Micros {
    with_view!(state, now, spec, |v| v.retry_after(cost))
}

/// Wait until the bucket is full, after `charged` units taken now.
pub fn reset_after(state: &BucketState, now: Micros, spec: &LimitSpec, charged: u64) -> Micros {
    with_view!(state, now, spec, |v| v.reset_after(charged))
}

/// Forgets what can no longer matter at `now` (sliding_log's expired entries),
/// without changing any answer: `available`, `retry_after` and `reset_after` are
/// the same before and after. Stores call it under the bucket's lock so a bucket
/// that only sees denials does not re-walk its expired entries on every call.
/// It also brings a gcra state counted at another emission interval (a reload
/// changed the spec) over to `spec` ([`gcra::rescale`]): answers after that are
/// the new spec's.
pub fn prune(state: &mut BucketState, now: Micros, spec: &LimitSpec) {
    match state {
        BucketState::SlidingLog(s) => sliding_log::prune(s, now, spec),
        BucketState::Gcra(s) => gcra::rescale(s, now, spec),
        BucketState::SlidingWindow(_) | BucketState::FixedWindow(_) => {}
    }
}

/// Records `cost` units taken now.
pub fn charge(state: &mut BucketState, now: Micros, spec: &LimitSpec, cost: u64) {
    match state {
        BucketState::SlidingLog(s) => sliding_log::charge(s, now, spec, cost),
        BucketState::SlidingWindow(s) => sliding_window::charge(s, now, spec, cost),
        BucketState::Gcra(s) => gcra::charge(s, now, spec, cost),
        BucketState::FixedWindow(s) => fixed_window::charge(s, now, spec, cost),
    }
}

/// When the bucket can be forgotten.
pub fn idle_at(state: &BucketState, spec: &LimitSpec) -> Micros {
    match state {
        BucketState::SlidingLog(s) => sliding_log::idle_at(s, spec),
        BucketState::SlidingWindow(s) => sliding_window::idle_at(s, spec),
        BucketState::Gcra(s) => gcra::idle_at(s, spec),
        BucketState::FixedWindow(s) => fixed_window::idle_at(s, spec),
    }
}

/// The verdict of one bucket on a request of `cost` at `now`. Pure: the state is
/// not touched; call [`charge`] to record an admission.
/// Whether `cost` fits a bucket, without what a [`Verdict`] adds for
/// reporting (what is left, when it is full again): what a caller that needs
/// only yes or no pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The cost fits now.
    pub allowed: bool,
    /// The cost exceeds the bucket's capacity: it never fits.
    pub insufficient: bool,
    /// When it does not fit now but could: the exact wait until it does.
    pub retry_after: Option<Micros>,
}

/// [`decide`]'s yes or no alone, the same answer (`cost <= available`).
#[inline]
pub fn fit(state: &BucketState, now: Micros, spec: &LimitSpec, cost: u64) -> Fit {
    with_view!(state, now, spec, |v| fit_of(&v, spec.capacity(), cost))
}

/// Whether `cost` fits `view` of a bucket of `capacity`: the rule
/// [`verdict`] reports on too.
#[inline]
fn fit_of(view: &impl BucketView, capacity: u64, cost: u64) -> Fit {
    let insufficient = cost > capacity;
    let allowed = !insufficient && view.fits(cost);
    Fit {
        allowed,
        insufficient,
        retry_after: (!allowed && !insufficient).then(|| view.retry_after(cost)),
    }
}

#[inline]
pub fn decide(state: &BucketState, now: Micros, spec: &LimitSpec, cost: u64) -> Verdict {
    with_view!(state, now, spec, |v| verdict(&v, spec.capacity(), cost))
}

/// The verdict of a bucket seen through `view` on a request of `cost`. Public
/// for the Redis store, whose sliding_log view is a summary of the log.
pub fn verdict(view: &impl BucketView, capacity: u64, cost: u64) -> Verdict {
    let Fit {
        allowed,
        insufficient,
        retry_after,
    } = fit_of(view, capacity, cost);
    let available = view.available();
    let reset_after_now = view.reset_after(0);
    Verdict {
        allowed,
        available,
        remaining: if allowed { available - cost } else { available },
        reset_after: if allowed {
            view.reset_after(cost)
        } else {
            reset_after_now
        },
        reset_after_now,
        retry_after,
        insufficient,
    }
}

#[cfg(test)]
mod tests;
