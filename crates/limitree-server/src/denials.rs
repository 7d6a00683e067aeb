//! Recent denials, for the status page: a count per level since start, and
//! the last [`RECENT`] denials themselves.
//!
//! Fed with one call ([`Denials::record`]) wherever a decision is answered —
//! `POST /v1/check`, `POST /v1/notify`, gRPC `ShouldRateLimit` and `POST /json`
//! — and bounded whatever the traffic: the counters are fixed by the policy
//! (one per level), the ring holds [`RECENT`] entries with bucket names cut
//! to [`MAX_LABEL`] bytes. An admitted decision costs one branch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use limitree::{Clock, Decision, Micros, Policy, Reason};
use parking_lot::Mutex;

/// Denials kept in the ring.
pub const RECENT: usize = 20;
/// Longest bucket name kept in the ring, in bytes (cut on a char boundary).
pub const MAX_LABEL: usize = 128;

/// Which API answered the denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /v1/check`.
    Check,
    /// `POST /v1/notify` (a suppressed notification).
    Notify,
    /// `ShouldRateLimit` over gRPC or `POST /json`.
    Rls,
}

impl Source {
    /// The name in the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Check => "check",
            Source::Notify => "notify",
            Source::Rls => "rls",
        }
    }
}

/// One denial, as the ring keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// When (the limiter's clock, µs since the epoch).
    pub at: Micros,
    /// Which API.
    pub source: Source,
    /// The tree.
    pub tree: String,
    /// `limited` or `insufficient_capacity`.
    pub reason: Reason,
    /// The levels that denied, each with its bucket (cut to [`MAX_LABEL`]).
    pub levels: Vec<(String, String)>,
}

/// The counters and the ring. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Denials {
    clock: Arc<dyn Clock>,
    /// Per tree (policy order), per level (tree order): denials since start.
    counts: Vec<(String, Vec<(String, AtomicU64)>)>,
    recent: Mutex<VecDeque<Denial>>,
}

impl Denials {
    /// Counters for every level of `policy`, times from `clock`.
    pub fn new(policy: &Policy, clock: Arc<dyn Clock>) -> Denials {
        Denials {
            clock,
            counts: policy
                .trees()
                .iter()
                .map(|t| {
                    let levels = t
                        .levels
                        .iter()
                        .map(|l| (l.name.clone(), AtomicU64::new(0)))
                        .collect();
                    (t.name.clone(), levels)
                })
                .collect(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    /// Notes `decision` if it is a denial by its levels (`limited` or
    /// `insufficient_capacity`; a store outage is not a level's denial).
    pub fn record(&self, source: Source, decision: &Decision) {
        if decision.allowed
            || !matches!(
                decision.reason,
                Reason::Limited | Reason::InsufficientCapacity
            )
        {
            return;
        }
        let counts = self.counts.iter().find(|(t, _)| *t == decision.tree);
        let mut levels = Vec::new();
        for level in decision.levels.iter().filter(|l| !l.allowed && !l.shadow) {
            if let Some((_, count)) =
                counts.and_then(|(_, ls)| ls.iter().find(|(name, _)| *name == level.name))
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
            levels.push((level.name.clone(), cut(&level.bucket)));
        }
        let denial = Denial {
            at: self.clock.now(),
            source,
            tree: decision.tree.clone(),
            reason: decision.reason,
            levels,
        };
        let mut recent = self.recent.lock();
        if recent.len() == RECENT {
            recent.pop_back();
        }
        recent.push_front(denial);
    }

    /// Denials by `level` of `tree` since start.
    pub fn count(&self, tree: &str, level: &str) -> u64 {
        self.counts
            .iter()
            .find(|(t, _)| t == tree)
            .and_then(|(_, ls)| ls.iter().find(|(l, _)| l == level))
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    /// The last denials, newest first.
    pub fn recent(&self) -> Vec<Denial> {
        self.recent.lock().iter().cloned().collect()
    }
}

fn cut(label: &str) -> String {
    if label.len() <= MAX_LABEL {
        return label.to_owned();
    }
    let mut end = MAX_LABEL;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &label[..end])
}

#[cfg(test)]
mod tests {
    use limitree::{LevelStatus, ManualClock};

    use super::*;

    fn denied(bucket: &str) -> Decision {
        let level = |name: &str, bucket: &str, allowed| LevelStatus {
            name: name.to_owned(),
            bucket: bucket.to_owned(),
            limit: 10,
            window: 1_000_000,
            remaining: 0,
            reset_after: 0,
            allowed,
            retry_after: None,
            shadow: false,
            share: None,
        };
        Decision {
            tree: "notifications".to_owned(),
            allowed: false,
            reason: Reason::Limited,
            retry_after: Some(1),
            levels: vec![level("global", "*", true), level("category", bucket, false)],
        }
    }

    #[test]
    fn the_ring_and_the_counters_stay_bounded() {
        let policy = Policy::default_notifications();
        let denials = Denials::new(&policy, Arc::new(ManualClock::new(5)));
        let long = format!("category={}", "é".repeat(200));
        for _ in 0..RECENT + 5 {
            denials.record(Source::Check, &denied(&long));
        }
        denials.record(Source::Notify, &denied("category=last"));
        let recent = denials.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].source, Source::Notify);
        assert_eq!(
            recent[0].levels,
            [("category".into(), "category=last".into())]
        );
        assert!(recent[1].levels[0].1.len() <= MAX_LABEL + '…'.len_utf8());
        assert_eq!(
            denials.count("notifications", "category"),
            RECENT as u64 + 6
        );
        assert_eq!(denials.count("notifications", "global"), 0);
    }

    #[test]
    fn admissions_and_outages_are_not_denials() {
        let policy = Policy::default_notifications();
        let denials = Denials::new(&policy, Arc::new(ManualClock::new(5)));
        let mut admitted = denied("category=a");
        admitted.allowed = true;
        admitted.reason = Reason::Ok;
        denials.record(Source::Check, &admitted);
        let mut outage = denied("category=a");
        outage.reason = Reason::StoreUnavailable;
        denials.record(Source::Rls, &outage);
        assert!(denials.recent().is_empty());
        assert_eq!(denials.count("notifications", "category"), 0);
    }
}
