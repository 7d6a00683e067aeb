//! Suppression digests: a suppressed notification is not lost without a
//! trace. Each category's suppressions are counted (with a few sample texts)
//! and, once the category can send again, one digest says how many were
//! suppressed, when, and what the first ones said.
//!
//! [`Digests`] is plain bookkeeping on the limiter's clock (µs since the epoch)
//! and decides nothing itself: the relay asks it which categories are due,
//! charges each digest through the limiter like any notification, and tells it
//! the outcome. At most one digest per category is queued at a time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use limitree::Micros;
use parking_lot::Mutex;

use super::tally::{Saved, Tally};

/// Most categories tallied at once: a client inventing categories cannot grow
/// this without bound (past it, suppressions of new categories go untallied).
pub const MAX_TALLIES: usize = 10_000;
/// Longest sample quoted, in characters.
const SAMPLE_CHARS: usize = 200;

/// A (tree, category) pair: digests are charged in the tree that suppressed.
pub type Key = (String, String);

#[derive(Debug, Default)]
struct Entry {
    tally: Option<Tally>,
    /// When to look again (the limiter's `retry_after` from the last denial).
    due: Micros,
    /// A digest for this category is queued and not yet finished.
    in_flight: bool,
}

/// Every category's tally.
#[derive(Debug)]
pub struct Digests {
    samples: usize,
    entries: Mutex<BTreeMap<Key, Entry>>,
}

impl Digests {
    /// Keeps up to `samples` texts per tally.
    pub fn new(samples: usize) -> Digests {
        Digests {
            samples,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one suppressed notification at `now`; the limiter said the
    /// category has room again after `retry_after`.
    pub fn record(
        &self,
        key: Key,
        text: &str,
        now: Micros,
        retry_after: Micros,
        request_id: Option<&str>,
    ) {
        let mut entries = self.entries.lock();
        if !entries.contains_key(&key) && entries.len() >= MAX_TALLIES {
            tracing::debug!("too many categories with suppressions; not tallying this one");
            return;
        }
        let entry = entries.entry(key).or_default();
        let due = now.saturating_add(retry_after);
        match &mut entry.tally {
            Some(tally) => {
                tally.count += 1;
                tally.last_at = now;
                if tally.samples.len() < self.samples {
                    tally.samples.push(sample(text));
                }
            }
            None => {
                entry.tally = Some(Tally {
                    count: 1,
                    first_at: now,
                    last_at: now,
                    samples: (self.samples > 0)
                        .then(|| sample(text))
                        .into_iter()
                        .collect(),
                    request_id: request_id.map(str::to_owned),
                });
            }
        }
        // The latest denial knows best when the category frees up.
        entry.due = due;
    }

    /// The categories whose digest should be tried at `now`.
    pub fn due(&self, now: Micros) -> Vec<Key> {
        self.entries
            .lock()
            .iter()
            .filter(|(_, e)| e.tally.is_some() && !e.in_flight && e.due <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The digest was admitted and is being queued: hands over the tally and
    /// marks a digest in flight.
    pub fn take(&self, key: &Key) -> Option<Tally> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(key)?;
        let tally = entry.tally.take()?;
        entry.in_flight = true;
        Some(tally)
    }

    /// The digest could not be queued after [`Digests::take`]: the tally comes
    /// back (merged with anything counted meanwhile) and is tried at `due`.
    pub fn put_back(&self, key: &Key, tally: Tally, due: Micros) {
        let mut entries = self.entries.lock();
        let entry = entries.entry(key.clone()).or_default();
        entry.in_flight = false;
        entry.due = due;
        entry.tally = Some(match entry.tally.take() {
            None => tally,
            Some(later) => {
                let mut merged = tally;
                merged.count += later.count;
                merged.last_at = later.last_at;
                for s in later.samples {
                    if merged.samples.len() < self.samples {
                        merged.samples.push(s);
                    }
                }
                merged
            }
        });
    }

    /// The limiter still denies the digest: try again at `due`.
    pub fn reschedule(&self, key: &Key, due: Micros) {
        if let Some(entry) = self.entries.lock().get_mut(key) {
            entry.due = due;
        }
    }

    /// The queued digest was delivered or dead-lettered; the next one (if
    /// more were suppressed meanwhile) may go.
    pub fn finished(&self, key: &Key) {
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.in_flight = false;
            if entry.tally.is_none() {
                entries.remove(key);
            }
        }
    }

    /// Every tally, for keeping across a graceful restart.
    pub fn save(&self) -> Vec<Saved> {
        self.entries
            .lock()
            .iter()
            .filter_map(|((tree, category), e)| {
                e.tally.as_ref().map(|tally| Saved {
                    tree: tree.clone(),
                    category: category.clone(),
                    tally: tally.clone(),
                    due: e.due,
                })
            })
            .collect()
    }

    /// Takes back tallies saved by the last run.
    pub fn restore(&self, saved: Vec<Saved>) {
        for s in saved {
            let key = (s.tree, s.category);
            self.put_back(&key, s.tally, s.due);
        }
    }

    /// Tallies waiting (for metrics and tests).
    pub fn pending(&self) -> usize {
        self.entries
            .lock()
            .values()
            .filter(|e| e.tally.is_some())
            .count()
    }
}

fn sample(text: &str) -> String {
    let mut s: String = text.chars().take(SAMPLE_CHARS).collect();
    if text.chars().nth(SAMPLE_CHARS).is_some() {
        s.push('…');
    }
    s
}

/// The digest's text, e.g. "23 `errors` notifications suppressed between
/// 10:02:11 and 10:31:40 UTC; first: …".
pub fn text(category: &str, tally: &Tally) -> String {
    let mut out = if tally.count == 1 {
        format!(
            "1 `{category}` notification suppressed at {} UTC",
            clock_time(tally.first_at)
        )
    } else {
        format!(
            "{} `{category}` notifications suppressed between {} and {} UTC",
            tally.count,
            clock_time(tally.first_at),
            clock_time(tally.last_at)
        )
    };
    for (i, s) in tally.samples.iter().enumerate() {
        let label = if i == 0 { "; first: " } else { "; then: " };
        let _ = write!(out, "{label}{s}");
    }
    out
}

/// `HH:MM:SS` of a time in µs since the epoch, UTC.
fn clock_time(at: Micros) -> String {
    let secs = at / 1_000_000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Micros = 60_000_000;
    /// 10:02:00 UTC on some day.
    const T0: Micros =
        1_700_000_000_000_000 - 1_700_000_000_000_000 % (86_400 * 1_000_000) + (10 * 60 + 2) * MIN;

    fn key(c: &str) -> Key {
        ("notifications".to_owned(), c.to_owned())
    }

    #[test]
    fn a_tally_is_due_when_the_limiter_said_and_one_digest_is_in_flight_at_a_time() {
        let digests = Digests::new(2);
        for (i, minute) in [0, 5, 29].into_iter().enumerate() {
            let now = T0 + minute * MIN;
            digests.record(
                key("errors"),
                &format!("disk full {i}"),
                now,
                30 * MIN - minute * MIN,
                Some("req-1"),
            );
        }
        assert!(digests.due(T0 + 29 * MIN).is_empty());
        assert_eq!(digests.due(T0 + 30 * MIN), [key("errors")]);

        let tally = digests.take(&key("errors")).unwrap();
        assert_eq!(tally.count, 3);
        assert_eq!(tally.samples, ["disk full 0", "disk full 1"]);
        assert_eq!(tally.request_id.as_deref(), Some("req-1"));
        assert_eq!(
            text("errors", &tally),
            "3 `errors` notifications suppressed between 10:02:00 and 10:31:00 UTC; \
             first: disk full 0; then: disk full 1"
        );

        // While that digest is queued, new suppressions wait for the next one.
        digests.record(key("errors"), "again", T0 + 31 * MIN, MIN, None);
        assert!(digests.due(T0 + 40 * MIN).is_empty());
        digests.finished(&key("errors"));
        assert_eq!(digests.due(T0 + 40 * MIN), [key("errors")]);
        assert_eq!(digests.take(&key("errors")).unwrap().count, 1);
        digests.finished(&key("errors"));
        assert_eq!(digests.pending(), 0);
    }

    #[test]
    fn a_refused_digest_keeps_its_count() {
        let digests = Digests::new(1);
        digests.record(key("a"), "x", T0, MIN, None);
        let tally = digests.take(&key("a")).unwrap();
        digests.record(key("a"), "y", T0 + 1, MIN, None);
        digests.put_back(&key("a"), tally, T0 + 2 * MIN);
        assert!(digests.due(T0 + MIN).is_empty());
        let merged = digests.take(&key("a")).unwrap();
        assert_eq!(merged.count, 2);
        assert_eq!(merged.samples, ["x"]);
        assert_eq!(text("a", &merged).split(';').count(), 2);
    }
}
