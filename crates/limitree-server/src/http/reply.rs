//! The JSON replies of `POST /v1/check` and `POST /v1/notify`: written by the
//! handlers ([`super::check`], [`super::notify`]) and read by the CLI's
//! [`crate::client`], so the two can never disagree on a field.
//!
//! Reading is tolerant: unknown fields are ignored and a missing `shadow` is
//! `false`, so a client reads a newer server's reply. `reason` stays a string
//! for the same reason (a newer server may have a reason this one lacks).

use limitree::Decision;
use limitree::clock::micros_to_millis_ceil;
use limitree::decision::LevelShare;
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
    /// Fair sharing, on the child level: the value's guarantee of the parent
    /// (absent in a tree without shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareReply>,
    /// Fair sharing, on the parent level: what its pool has left (absent in a
    /// tree without shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_remaining: Option<u64>,
}

/// A child level's guarantee, as a [`LevelReply`] shows it. Read tolerantly
/// (a missing field is 0), as the rest of the reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShareReply {
    /// The value's guaranteed units of the parent (0: it only borrows).
    pub guaranteed: u64,
    /// Units left in the guarantee.
    pub remaining: u64,
    /// How much of this request came from the parent's pool.
    pub borrowed: u64,
}

/// A level's `share` and `pool_remaining` fields (a level between two
/// splits has both).
fn share_fields(share: Option<LevelShare>) -> (Option<ShareReply>, Option<u64>) {
    let Some(share) = share else {
        return (None, None);
    };
    let reply = share
        .guarantee()
        .map(|(guaranteed, remaining, borrowed)| ShareReply {
            guaranteed,
            remaining,
            borrowed,
        });
    (reply, share.pool_remaining())
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
                .map(|l| {
                    let (share, pool_remaining) = share_fields(l.share);
                    LevelReply {
                        name: l.name,
                        bucket: l.bucket,
                        limit: l.limit,
                        window_ms: micros_to_millis_ceil(l.window),
                        remaining: l.remaining,
                        reset_after_ms: micros_to_millis_ceil(l.reset_after),
                        allowed: l.allowed,
                        retry_after_ms: l.retry_after.map(micros_to_millis_ceil),
                        shadow: l.shadow,
                        share,
                        pool_remaining,
                    }
                })
                .collect(),
        }
    }
}

/// The body of `POST /v1/check` for `decision`, written straight from it: the
/// same bytes as serializing [`CheckReply::from`] with serde_json (a test holds
/// them equal), without copying every name and bucket into a `CheckReply`
/// first, and without serde's per-field machinery.
pub fn check_json(decision: &Decision) -> Vec<u8> {
    let d = decision;
    let mut out = Vec::with_capacity(96 + 224 * d.levels.len());
    out.extend_from_slice(b"{\"tree\":");
    push_json_str(&mut out, &d.tree);
    out.extend_from_slice(b",\"allowed\":");
    push_bool(&mut out, d.allowed);
    out.extend_from_slice(b",\"reason\":");
    push_json_str(&mut out, d.reason.as_str());
    out.extend_from_slice(b",\"retry_after_ms\":");
    push_opt_u64(&mut out, d.retry_after.map(micros_to_millis_ceil));
    out.extend_from_slice(b",\"levels\":[");
    for (i, l) in d.levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_json_str(&mut out, &l.name);
        out.extend_from_slice(b",\"bucket\":");
        push_json_str(&mut out, &l.bucket);
        out.extend_from_slice(b",\"limit\":");
        push_u64(&mut out, l.limit);
        out.extend_from_slice(b",\"window_ms\":");
        push_u64(&mut out, micros_to_millis_ceil(l.window));
        out.extend_from_slice(b",\"remaining\":");
        push_u64(&mut out, l.remaining);
        out.extend_from_slice(b",\"reset_after_ms\":");
        push_u64(&mut out, micros_to_millis_ceil(l.reset_after));
        out.extend_from_slice(b",\"allowed\":");
        push_bool(&mut out, l.allowed);
        out.extend_from_slice(b",\"retry_after_ms\":");
        push_opt_u64(&mut out, l.retry_after.map(micros_to_millis_ceil));
        out.extend_from_slice(b",\"shadow\":");
        push_bool(&mut out, l.shadow);
        let (share, pool_remaining) = share_fields(l.share);
        if let Some(share) = share {
            out.extend_from_slice(b",\"share\":{\"guaranteed\":");
            push_u64(&mut out, share.guaranteed);
            out.extend_from_slice(b",\"remaining\":");
            push_u64(&mut out, share.remaining);
            out.extend_from_slice(b",\"borrowed\":");
            push_u64(&mut out, share.borrowed);
            out.push(b'}');
        }
        if let Some(pool) = pool_remaining {
            out.extend_from_slice(b",\"pool_remaining\":");
            push_u64(&mut out, pool);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

fn push_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

fn push_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => push_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// `v` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `s` as a JSON string, escaped as serde_json escapes it: `"`, `\\` and the
/// control characters; everything else (also non-ASCII) as is.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
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

    #[test]
    fn the_check_body_is_written_as_the_reply_type_serializes() {
        use limitree::{LevelStatus, Reason};
        let level = |name: &str, shadow, retry_after: Option<u64>| LevelStatus {
            name: name.to_owned(),
            bucket: "category=a\"b\\\u{1}\u{1f}\n\t\u{e9}/".to_owned(),
            limit: 10,
            window: 1_800_000_000,
            remaining: 3,
            reset_after: 1_000_001,
            allowed: retry_after.is_none(),
            retry_after,
            shadow,
            share: None,
        };
        for decision in [
            Decision {
                tree: "t".to_owned(),
                allowed: false,
                reason: Reason::Limited,
                retry_after: Some(1_500_001),
                levels: vec![
                    level("global", false, None),
                    level("category", true, Some(7)),
                ],
            },
            Decision {
                tree: "shared".to_owned(),
                allowed: true,
                reason: Reason::Ok,
                retry_after: None,
                levels: vec![
                    LevelStatus {
                        share: Some(LevelShare::Parent { pool_remaining: 17 }),
                        ..level("global", false, None)
                    },
                    LevelStatus {
                        share: Some(LevelShare::Middle {
                            pool_remaining: 3,
                            guaranteed: 6,
                            remaining: 1,
                            borrowed: 0,
                        }),
                        ..level("team", false, None)
                    },
                    LevelStatus {
                        share: Some(LevelShare::Child {
                            guaranteed: 4,
                            remaining: 0,
                            borrowed: 2,
                        }),
                        ..level("category", false, None)
                    },
                ],
            },
            Decision {
                tree: "big".to_owned(),
                allowed: true,
                reason: Reason::Shadow,
                retry_after: Some(u64::MAX),
                levels: vec![LevelStatus {
                    limit: u64::MAX,
                    remaining: 0,
                    ..level("x", false, Some(999))
                }],
            },
            Decision {
                tree: "t".to_owned(),
                allowed: true,
                reason: Reason::Ok,
                retry_after: None,
                levels: vec![],
            },
        ] {
            let expected = serde_json::to_vec(&CheckReply::from(decision.clone())).unwrap();
            assert_eq!(
                String::from_utf8(check_json(&decision)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
