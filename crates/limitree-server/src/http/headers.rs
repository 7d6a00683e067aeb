//! Rate-limit response headers, in the structured-field form of the IETF httpapi
//! `RateLimit` header draft:
//!
//! ```text
//! RateLimit-Policy: "global";q=100;w=1800, "category";q=10;w=1800
//! RateLimit: "category";r=0;t=1800
//! Retry-After: 1800
//! ```
//!
//! `RateLimit-Policy` lists every enforcing level of the chain (its quota `q`
//! and window `w` in seconds); `RateLimit` names the most constraining one (a
//! level that denied, else the fewest units remaining; on a tie, the longest
//! wait until reset) with what
//! remains (`r`) and the seconds until it resets (`t`). Shadow levels never deny,
//! so they are left out. Every time is rounded **up** to whole seconds: a client
//! that waits as told is never early.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use limitree::{Decision, LevelStatus, Micros};

use super::reply::push_u64;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds in `us`, rounded up.
pub fn seconds_ceil(us: Micros) -> u64 {
    us.div_ceil(1_000_000)
}

/// The headers that go with a check's answer.
pub fn for_decision(decision: &Decision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    insert_for_decision(&mut headers, decision);
    headers
}

/// Adds the headers that go with a check's answer to `headers`. Each value is
/// written into one reused buffer, without a `String` (or `format!`) per level.
pub fn insert_for_decision(headers: &mut HeaderMap, decision: &Decision) {
    let mut value = Vec::with_capacity(48 * decision.levels.len());
    let mut tightest: Option<&LevelStatus> = None;
    for l in decision.levels.iter().filter(|l| !l.shadow) {
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        sf_string(&mut value, &l.name);
        value.extend_from_slice(b";q=");
        push_u64(&mut value, l.limit);
        value.extend_from_slice(b";w=");
        push_u64(&mut value, seconds_ceil(l.window));
        tightest = Some(match tightest {
            Some(t) if !tighter(l, t) => t,
            _ => l,
        });
    }
    insert(headers, RATELIMIT_POLICY, &value);

    if let Some(tightest) = tightest {
        value.clear();
        sf_string(&mut value, &tightest.name);
        value.extend_from_slice(b";r=");
        push_u64(&mut value, tightest.remaining);
        value.extend_from_slice(b";t=");
        push_u64(&mut value, seconds_ceil(tightest.reset_after));
        insert(headers, RATELIMIT, &value);
    }

    if let Some(retry) = decision.retry_after.filter(|_| !decision.allowed) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds_ceil(retry)));
    }
}

/// Whether `a` is a tighter level to watch than `b`: it denied and `b` did
/// not (a level with fewer units left that had room did not stop this
/// request); else fewer units left; on a tie, it takes longer to reset (it
/// will stay tight longer). On a full tie the first level is kept.
fn tighter(a: &LevelStatus, b: &LevelStatus) -> bool {
    a.allowed
        .cmp(&b.allowed)
        .then(a.remaining.cmp(&b.remaining))
        .then(b.reset_after.cmp(&a.reset_after))
        .is_lt()
}

/// A structured-field string: quoted, with `"` and `\` escaped. Characters a
/// structured-field string cannot carry (non-ASCII, controls) become `?`, so a
/// strange level name cannot break the header.
fn sf_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            ' '..='~' => out.push(c as u8),
            _ => out.push(b'?'),
        }
    }
    out.push(b'"');
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    // Every value is built from visible ASCII above, so this always succeeds.
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use limitree::Reason;

    /// A request denied by a level with 4 left (it asked for more), while a
    /// level with only 3 left had room for it: `RateLimit` names the level
    /// that denied, not the one with the fewest left.
    #[test]
    fn the_level_that_denied_is_named_even_with_more_left() {
        let decision = Decision {
            tree: "t".to_owned(),
            allowed: false,
            reason: Reason::Limited,
            retry_after: Some(2_000_000),
            levels: vec![
                LevelStatus {
                    allowed: true,
                    ..level("global", 3, 1_000_000)
                },
                LevelStatus {
                    allowed: false,
                    ..level("category", 4, 1_000_000)
                },
            ],
        };
        let headers = for_decision(&decision);
        assert_eq!(headers[RATELIMIT], "\"category\";r=4;t=1");
    }

    fn level(name: &str, remaining: u64, reset_after: Micros) -> LevelStatus {
        LevelStatus {
            name: name.to_owned(),
            bucket: "*".to_owned(),
            limit: 10,
            window: 1_800_000_000,
            remaining,
            reset_after,
            allowed: remaining > 0,
            retry_after: None,
            shadow: false,
            share: None,
        }
    }

    #[test]
    fn ties_go_to_the_longest_reset_and_times_round_up() {
        let decision = Decision {
            tree: "t".to_owned(),
            allowed: false,
            reason: Reason::Limited,
            retry_after: Some(1_500_001),
            levels: vec![level("a", 0, 1_000_000), level("b", 0, 2_000_001)],
        };
        let headers = for_decision(&decision);
        assert_eq!(headers[RATELIMIT], "\"b\";r=0;t=3");
        assert_eq!(
            headers[RATELIMIT_POLICY],
            "\"a\";q=10;w=1800, \"b\";q=10;w=1800"
        );
        assert_eq!(headers[header::RETRY_AFTER], "2");
    }

    #[test]
    fn names_are_escaped() {
        let sf = |s: &str| {
            let mut out = Vec::new();
            sf_string(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(sf(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf("é"), "\"?\"");
    }
}
