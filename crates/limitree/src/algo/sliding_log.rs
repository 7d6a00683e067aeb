//! `sliding_log`: the exact rolling window (the seed's sorted-set design).
//!
//! Every admission is logged with its time; a bucket admits `cost` iff the units
//! logged in the last `window` plus `cost` stay within `limit`. An entry logged at
//! `t` counts while `now < t + window`. Entries at the same instant are merged, so
//! a bucket never holds more than `limit` live entries: O(limit) state.

use std::collections::VecDeque;

use crate::clock::Micros;
use crate::policy::LimitSpec;

/// The log of one bucket, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// (time, units) in non-decreasing time order.
    entries: VecDeque<(Micros, u64)>,
    /// Sum of units over `entries`, expired ones included until pruned.
    total: u64,
}

impl State {
    /// Number of log entries held (expired ones included until the next charge).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The logged (time, units) entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (Micros, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Logs `units` at `ts` in time order (merged into an entry at the same
    /// time): how a reload's carry ([`super::carry`]) moves admissions from
    /// one bucket to another with their times, so they leave the window when
    /// they would have.
    pub fn insert(&mut self, ts: Micros, units: u64) {
        if units == 0 {
            return;
        }
        self.total += units;
        let at = self.entries.partition_point(|(t, _)| *t < ts);
        match self.entries.get_mut(at) {
            Some((t, u)) if *t == ts => *u += units,
            _ => self.entries.insert(at, (ts, units)),
        }
    }
}

fn expired(ts: Micros, now: Micros, spec: &LimitSpec) -> bool {
    ts.saturating_add(spec.window) <= now
}

/// Units logged within the window ending at `now`.
fn used(s: &State, now: Micros, spec: &LimitSpec) -> u64 {
    let gone: u64 = s
        .entries
        .iter()
        .take_while(|(ts, _)| expired(*ts, now, spec))
        .map(|(_, units)| units)
        .sum();
    s.total - gone
}

/// A log at one instant, with the live units summed once.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    s: &'a State,
    now: Micros,
    window: Micros,
    limit: u64,
    used: u64,
}

/// Looks at the log at `now`.
pub fn view<'a>(s: &'a State, now: Micros, spec: &LimitSpec) -> View<'a> {
    View {
        s,
        now,
        window: spec.window,
        limit: spec.limit,
        used: used(s, now, spec),
    }
}

impl super::BucketView for View<'_> {
    fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// The oldest live entries leave one by one; `cost` fits once enough have left.
    fn retry_after(&self, cost: u64) -> Micros {
        let must_free = (self.used + cost).saturating_sub(self.limit);
        let mut freed = 0;
        let live = self
            .s
            .entries
            .iter()
            .skip_while(|(ts, _)| ts.saturating_add(self.window) <= self.now);
        for &(ts, units) in live {
            freed += units;
            if freed >= must_free {
                return (ts + self.window).saturating_sub(self.now);
            }
        }
        // Unreachable for `cost <= limit`: every live entry leaving frees all units.
        self.window
    }

    /// Full again when the newest entry leaves the window.
    fn reset_after(&self, charged: u64) -> Micros {
        let newest = self.s.entries.back().map(|(ts, _)| *ts);
        let newest = if charged > 0 {
            Some(newest.map_or(self.now, |ts| ts.max(self.now)))
        } else {
            newest
        };
        newest.map_or(0, |ts| (ts + self.window).saturating_sub(self.now))
    }
}

/// Prunes what left the window and logs `cost` units at `now` (or at the newest
/// entry's time if the clock went backwards, keeping the log ordered; that entry
/// then lives slightly longer — conservative, never over-admitting).
pub fn charge(s: &mut State, now: Micros, spec: &LimitSpec, cost: u64) {
    prune(s, now, spec);
    if cost == 0 {
        return;
    }
    s.total += cost;
    match s.entries.back_mut() {
        Some((ts, units)) if *ts >= now => *units += cost,
        _ => s.entries.push_back((now, cost)),
    }
}

/// Drops the entries that have left the window.
pub fn prune(s: &mut State, now: Micros, spec: &LimitSpec) {
    while let Some(&(ts, units)) = s.entries.front() {
        if !expired(ts, now, spec) {
            break;
        }
        s.entries.pop_front();
        s.total -= units;
    }
}

/// Idle once the newest entry has left the window.
pub fn idle_at(s: &State, spec: &LimitSpec) -> Micros {
    s.entries.back().map_or(0, |(ts, _)| ts + spec.window)
}
