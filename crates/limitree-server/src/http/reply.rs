//! The JSON replies of `POST /v1/check` and `POST /v1/notify`: written by the
//! handlers ([`super::check`], [`super::notify`]) and read by the CLI's
//! [`crate::client`], so the two can never disagree on a field.
//!
//! Reading is tolerant: unknown fields are ignored and a missing `shadow` is
//! `false`, so a client reads a newer server's reply. `reason` stays a string
//! for the same reason (a newer server may have a reason this one lacks).

use limitree::Decision;
use limitree::clock::micros_to_millis_ceil;
use serde::{Deserialize, Serialize};

/// A decision, as `POST /v1/check` answers it (and a suppressed notify's 429).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReply {
    /// The tree decided.
    pub tree: String,
    /// Admitted.
    pub allowed: bool,
    /// `ok`, `limited`, `insufficient_capacity`, `store_unavailable` or `shadow`.
    pub reason: String,
    /// When limited: milliseconds (rounded up) until the whole chain could take the cost.
    pub retry_after_ms: Option<u64>,
    /// Per level, root first.
    pub levels: Vec<LevelReply>,
}

/// One level of a [`CheckReply`]; times in milliseconds, rounded up so a
/// shown wait is never early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelReply {
    /// The level's name.
    pub name: String,
    /// The bucket (`category=errors`, `*` for a global level).
    pub bucket: String,
    /// The bucket's limit per window.
    pub limit: u64,
    /// The window.
    pub window_ms: u64,
    /// Units left.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_after_ms: u64,
    /// This level had room.
    pub allowed: bool,
    /// When this level lacked room: until it has.
    pub retry_after_ms: Option<u64>,
    /// A shadow level (reported, never denies).
    #[serde(default)]
    pub shadow: bool,
}

/// The 202 of `POST /v1/notify`: the notification's id, and the check
/// reply's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedReply {
    /// The notification's id (in the delivery's log lines and dead letters).
    pub id: String,
    /// The decision, as `POST /v1/check` shows it.
    #[serde(flatten)]
    pub decision: CheckReply,
}

impl From<Decision> for CheckReply {
    fn from(d: Decision) -> Self {
        CheckReply {
            tree: d.tree,
            allowed: d.allowed,
            reason: d.reason.as_str().to_owned(),
            retry_after_ms: d.retry_after.map(micros_to_millis_ceil),
            levels: d
                .levels
                .into_iter()
                .map(|l| LevelReply {
                    name: l.name,
                    bucket: l.bucket,
                    limit: l.limit,
                    window_ms: micros_to_millis_ceil(l.window),
                    remaining: l.remaining,
                    reset_after_ms: micros_to_millis_ceil(l.reset_after),
                    allowed: l.allowed,
                    retry_after_ms: l.retry_after.map(micros_to_millis_ceil),
                    shadow: l.shadow,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reads_back_and_tolerates_what_it_does_not_know() {
        let text = r#"{"tree": "t", "allowed": false, "reason": "new_reason", "retry_after_ms": 5,
            "extra": 1, "levels": [{"name": "global", "bucket": "*", "limit": 1, "window_ms": 10,
            "remaining": 0, "reset_after_ms": 10, "allowed": false, "retry_after_ms": 5,
            "share": {"guaranteed": 1}}]}"#;
        let reply: CheckReply = serde_json::from_str(text).unwrap();
        assert_eq!(reply.reason, "new_reason");
        assert!(!reply.levels[0].shadow);
        let again: CheckReply =
            serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
        assert_eq!(again, reply);
    }
}
