//! Carrying used units from one bucket layout to another: what a reload that
//! changes a fair-sharing split ([`crate::policy::Shares`]) does with the
//! parent's state, so that the parent never admits more than its limit in
//! the window of the reload.
//!
//! The old layout's states (a whole bucket, or a pool and its guarantees)
//! are read as one [`Usage`] — what they hold at `now`, in the form the
//! algorithm counts it — and [`fill`] puts it into the new layout's states
//! in order: the first (the pool) up to its room, then each next one (the
//! guarantees, in the policy's order), and what still does not fit back
//! into the first (over its limit, so it admits nothing until that has
//! passed). The parts' limits sum to the parent's, so a parent that held `U`
//! of `L` holds `U` after the carry and can take at most `L − U` more:
//! exactly what one bucket of `L` would.
//!
//! Each algorithm carries what decides its answers:
//! - `sliding_log`: the live admissions with their times, newest first into
//!   the first state (the guarantees get the oldest, which leave the window
//!   first), so every unit leaves the window when it would have;
//! - `fixed_window`: the current window's count;
//! - `sliding_window`: the current and the previous window's counts, each
//!   filled on its own (each part then counts at most its limit per aligned
//!   window, so the parent counts at most `L`);
//! - `gcra`: the units still owed (a partly repaid unit counts as owed, as a
//!   reload's rescale counts them), owed again at each part's own interval.
//!
//! `decide.lua` (`carry_layout`) does the same, step by step, for the Redis
//! store.

use super::{BucketState, fixed_window, gcra, sliding_window};
use crate::clock::Micros;
use crate::policy::LimitSpec;

/// What one or more buckets of one algorithm hold at an instant, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// `sliding_log`: live (time, units), oldest first, one entry per time.
    Log(Vec<(Micros, u64)>),
    /// `sliding_window`: units in the window containing `now` and in the one
    /// before it.
    Windows {
        /// The current window's count.
        curr: u64,
        /// The previous window's count.
        prev: u64,
    },
    /// `fixed_window`: units in the window containing `now`.
    Count(u64),
    /// `gcra`: whole units still owed at `now`.
    Owed(u64),
}

/// What `state` holds at `now`, read with `spec`'s window (the layout's new
/// one: a reload may change it too, and the kept state is read under it as
/// an unchanged bucket's would be).
pub fn usage(state: &BucketState, now: Micros, spec: &LimitSpec) -> Usage {
    let window = spec.window;
    match state {
        BucketState::SlidingLog(s) => Usage::Log(
            s.entries()
                .filter(|(ts, _)| ts.saturating_add(window) > now)
                .collect(),
        ),
        BucketState::SlidingWindow(s) => {
            let (_, _, prev, curr) = sliding_window::counts(s, now, spec);
            Usage::Windows { curr, prev }
        }
        BucketState::FixedWindow(s) => Usage::Count(fixed_window::window_of(s, now, spec).1),
        BucketState::Gcra(s) => Usage::Owed(if s.tat > now && s.interval > 0 {
            (s.tat - now).div_ceil(s.interval)
        } else {
            0
        }),
    }
}

impl Usage {
    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        match self {
            Usage::Log(entries) => entries.is_empty(),
            Usage::Windows { curr, prev } => *curr == 0 && *prev == 0,
            Usage::Count(n) | Usage::Owed(n) => *n == 0,
        }
    }

    /// Adds what `other` (of the same algorithm) holds.
    pub fn add(&mut self, other: Usage) {
        match (self, other) {
            (Usage::Log(a), Usage::Log(b)) => {
                a.extend(b);
                a.sort_unstable_by_key(|(ts, _)| *ts);
                a.dedup_by(|later, earlier| {
                    let same = later.0 == earlier.0;
                    if same {
                        earlier.1 += later.1;
                    }
                    same
                });
            }
            (Usage::Windows { curr, prev }, Usage::Windows { curr: c, prev: p }) => {
                *curr += c;
                *prev += p;
            }
            (Usage::Count(a), Usage::Count(b)) | (Usage::Owed(a), Usage::Owed(b)) => *a += b,
            // One layout's states share one algorithm: a state of another
            // (a reload that changed it starts fresh) holds nothing to carry.
            _ => {}
        }
    }
}

/// Puts `usage` into `targets` (states of the usage's algorithm, fresh or
/// not, each with its spec) in order, each up to its room at `now`, and
/// what is left into the first one. See the module docs.
pub fn fill(usage: Usage, now: Micros, targets: &mut [(&mut BucketState, &LimitSpec)]) {
    if targets.is_empty() || usage.is_empty() {
        return;
    }
    for (state, spec) in targets.iter_mut() {
        state.conform(spec);
        super::prune(state, now, spec);
    }
    match usage {
        Usage::Log(mut entries) => {
            for (state, spec) in targets.iter_mut() {
                let mut room = super::available(state, now, spec);
                let BucketState::SlidingLog(s) = &mut **state else {
                    return;
                };
                while room > 0
                    && let Some(newest) = entries.last_mut()
                {
                    let take = newest.1.min(room);
                    s.insert(newest.0, take);
                    room -= take;
                    newest.1 -= take;
                    if newest.1 == 0 {
                        entries.pop();
                    }
                }
            }
            if let BucketState::SlidingLog(s) = &mut *targets[0].0 {
                for (ts, units) in entries {
                    s.insert(ts, units);
                }
            }
        }
        Usage::Windows { mut curr, mut prev } => {
            // `all`: the first state's second turn, which takes what is left.
            let mut take = |state: &mut BucketState, spec: &LimitSpec, all: bool| {
                let BucketState::SlidingWindow(s) = state else {
                    return;
                };
                let (start, _, p, c) = sliding_window::counts(s, now, spec);
                let room = |held: u64| {
                    if all {
                        u64::MAX
                    } else {
                        spec.limit.saturating_sub(held)
                    }
                };
                let (tc, tp) = (curr.min(room(c)), prev.min(room(p)));
                curr -= tc;
                prev -= tp;
                *s = sliding_window::State {
                    start,
                    curr: c + tc,
                    prev: p + tp,
                };
            };
            for (state, spec) in targets.iter_mut() {
                take(state, spec, false);
            }
            let (state, spec) = &mut targets[0];
            take(state, spec, true);
        }
        Usage::Count(mut left) | Usage::Owed(mut left) => {
            // Both count units against `available` and take them as a
            // charge does (gcra at the part's own interval).
            let put = |state: &mut BucketState, spec: &LimitSpec, units: u64| match state {
                BucketState::FixedWindow(s) => fixed_window::charge(s, now, spec, units),
                BucketState::Gcra(s) => gcra::charge(s, now, spec, units),
                BucketState::SlidingLog(_) | BucketState::SlidingWindow(_) => {}
            };
            for (state, spec) in targets.iter_mut() {
                let room = super::available(state, now, spec).min(left);
                if room > 0 {
                    put(state, spec, room);
                    left -= room;
                }
            }
            if left > 0 {
                let (state, spec) = &mut targets[0];
                put(state, spec, left);
            }
        }
    }
}
