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
//! and window `w` in seconds); `RateLimit` names the most constraining one (the
//! fewest units remaining; on a tie, the longest wait until reset) with what
//! remains (`r`) and the seconds until it resets (`t`). Shadow levels never deny,
//! so they are left out. Every time is rounded **up** to whole seconds: a client
//! that waits as told is never early.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use limitree::{Decision, LevelStatus, Micros};

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
    let enforcing: Vec<&LevelStatus> = decision.levels.iter().filter(|l| !l.shadow).collect();

    let policy = enforcing
        .iter()
        .map(|l| {
            format!(
                "{};q={};w={}",
                sf_string(&l.name),
                l.limit,
                seconds_ceil(l.window)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    insert(&mut headers, RATELIMIT_POLICY, &policy);

    if let Some(tightest) = most_constraining(&enforcing) {
        let value = format!(
            "{};r={};t={}",
            sf_string(&tightest.name),
            tightest.remaining,
            seconds_ceil(tightest.reset_after)
        );
        insert(&mut headers, RATELIMIT, &value);
    }

    if let Some(retry) = decision.retry_after.filter(|_| !decision.allowed) {
        insert(
            &mut headers,
            header::RETRY_AFTER,
            &seconds_ceil(retry).to_string(),
        );
    }
    headers
}

/// The level a client should watch: fewest units left; on a tie, the one that
/// takes longest to reset (it will stay tight longest).
fn most_constraining<'a>(levels: &[&'a LevelStatus]) -> Option<&'a LevelStatus> {
    levels.iter().copied().min_by(|a, b| {
        a.remaining
            .cmp(&b.remaining)
            .then(b.reset_after.cmp(&a.reset_after))
    })
}

/// A structured-field string: quoted, with `"` and `\` escaped. Characters a
/// structured-field string cannot carry (non-ASCII, controls) become `?`, so a
/// strange level name cannot break the header.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if value.is_empty() {
        return;
    }
    // Every value is built from ASCII above, so this always succeeds.
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use limitree::Reason;

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
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf_string("é"), "\"?\"");
    }
}
