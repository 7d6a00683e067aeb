//! A category's tally of limited notifications: what the digests count and
//! what an outbox keeps across a restart (`Outbox::save_digests`).
//!
//! Its own module so that the outbox, which stores these, does not depend on
//! the digest bookkeeping that produces them: both depend on this instead.

use limitree::Micros;

/// The suppressions of one category since its last digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// How many were suppressed.
    pub count: u64,
    /// When the first and the last were.
    pub first_at: Micros,
    /// When the last was.
    pub last_at: Micros,
    /// The first few texts.
    pub samples: Vec<String>,
    /// The request id of the first, so the digest's delivery can name it.
    pub request_id: Option<String>,
}

/// A tally kept across a restart: its key, counts, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// The tree.
    pub tree: String,
    /// The category.
    pub category: String,
    /// The counts.
    pub tally: Tally,
    /// When to try its digest (µs since the epoch).
    pub due: Micros,
}
