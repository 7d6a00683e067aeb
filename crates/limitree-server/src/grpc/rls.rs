//! Envoy's `ShouldRateLimit` on a native tree: how a `RateLimitRequest` becomes
//! one [`limitree::CheckRequest`] and how the [`Decision`] becomes a `RateLimitResponse`.
//!
//! The mapping (the README's "gRPC" section says the same):
//! - `domain` names the tree.
//! - The entries of every request descriptor are merged into one descriptor map,
//!   so the call is **one chain, decided all-or-nothing**: an `OVER_LIMIT` answer
//!   charged nothing anywhere. A key given twice with different values is an
//!   `INVALID_ARGUMENT`; the same value twice is fine.
//! - Cost: the request's `hits_addend` (0 and unset both mean 1); a descriptor's
//!   own `hits_addend` overrides it. Until buckets carry their own costs, the
//!   descriptors of one call must agree on it (else `INVALID_ARGUMENT`); all of
//!   them 0 is a peek (checked and reported, nothing charged).
//! - Statuses: one per request descriptor, in request order. Each level of the
//!   chain is reported on the first descriptor whose entries hold all of the
//!   level's `by` keys (a global level: the first descriptor); a descriptor's
//!   status is its most constraining level — a denying one if any, else the one
//!   with the fewest units left. A descriptor no level is reported on is `OK`
//!   without a limit, as envoyproxy/ratelimit answers descriptors that match no
//!   rule.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use limitree::policy::{Tree, format_duration};
use limitree::{Decision, LevelStatus, Micros};

use super::ResponseHeaders;

/// Most descriptors one call may carry (Envoy sends one per matching rate-limit
/// action; a few is usual).
pub const MAX_DESCRIPTORS: usize = 64;
/// Most entries one descriptor may carry.
pub const MAX_ENTRIES: usize = 16;

/// Why a request is not a question limitree can decide; each becomes
/// `INVALID_ARGUMENT` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `domain` is empty.
    #[error("`domain` is empty; set it to the name of a tree")]
    EmptyDomain,
    /// No descriptors.
    #[error("the request has no descriptors; send at least one")]
    NoDescriptors,
    /// Too many descriptors.
    #[error("the request has {0} descriptors; at most {MAX_DESCRIPTORS} are accepted")]
    TooManyDescriptors(usize),
    /// A descriptor has no entries.
    #[error("descriptor {0} has no entries; give it at least one key and value")]
    EmptyDescriptor(usize),
    /// A descriptor has too many entries.
    #[error("descriptor {index} has {count} entries; at most {MAX_ENTRIES} are accepted")]
    TooManyEntries {
        /// Position in the request.
        index: usize,
        /// Entries it has.
        count: usize,
    },
    /// One key with two values.
    #[error(
        "descriptor key `{key}` is given twice with different values (`{first}`, then `{second}`); a call is one chain, so each key may have one value"
    )]
    ConflictingValues {
        /// The key (cut to 64 bytes).
        key: String,
        /// The first value (cut).
        first: String,
        /// The other value (cut).
        second: String,
    },
    /// Descriptors with different costs.
    #[error(
        "descriptors carry different hits_addend values ({0} and {1}); limitree decides one cost per call: send them in separate calls"
    )]
    MixedCosts(u64, u64),
}

/// A `RateLimitRequest` as one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The tree (`domain`).
    pub tree: String,
    /// Every descriptor's entries, merged.
    pub descriptors: BTreeMap<String, String>,
    /// Per request descriptor, its keys (for attributing levels to statuses).
    pub keys: Vec<Vec<String>>,
    /// Units to take; 0 peeks.
    pub cost: u64,
}

/// Reads `request` as a question, or says why it is not one.
pub fn question(request: &RateLimitRequest) -> Result<Question, RequestError> {
    if request.domain.is_empty() {
        return Err(RequestError::EmptyDomain);
    }
    if request.descriptors.is_empty() {
        return Err(RequestError::NoDescriptors);
    }
    if request.descriptors.len() > MAX_DESCRIPTORS {
        return Err(RequestError::TooManyDescriptors(request.descriptors.len()));
    }
    let call_cost = match request.hits_addend {
        0 => 1,
        n => u64::from(n),
    };
    let mut cost = None;
    let mut descriptors: BTreeMap<String, String> = BTreeMap::new();
    let mut keys = Vec::with_capacity(request.descriptors.len());
    for (index, descriptor) in request.descriptors.iter().enumerate() {
        check_shape(index, descriptor)?;
        let own = descriptor.hits_addend.map_or(call_cost, |v| v.value);
        match cost {
            None => cost = Some(own),
            Some(c) if c != own => return Err(RequestError::MixedCosts(c, own)),
            Some(_) => {}
        }
        let mut these = Vec::with_capacity(descriptor.entries.len());
        for entry in &descriptor.entries {
            match BTreeMap::get(&descriptors, entry.key.as_str()) {
                Some(first) if *first != entry.value => {
                    return Err(RequestError::ConflictingValues {
                        key: cut(&entry.key),
                        first: cut(first),
                        second: cut(&entry.value),
                    });
                }
                Some(_) => {}
                None => {
                    descriptors.insert(entry.key.clone(), entry.value.clone());
                }
            }
            these.push(entry.key.clone());
        }
        keys.push(these);
    }
    Ok(Question {
        tree: request.domain.clone(),
        descriptors,
        keys,
        cost: cost.unwrap_or(call_cost),
    })
}

fn check_shape(index: usize, descriptor: &RateLimitDescriptor) -> Result<(), RequestError> {
    match descriptor.entries.len() {
        0 => Err(RequestError::EmptyDescriptor(index)),
        n if n > MAX_ENTRIES => Err(RequestError::TooManyEntries { index, count: n }),
        _ => Ok(()),
    }
}

/// `text`, cut to 64 bytes on a character boundary, for messages.
fn cut(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The answer to `question` given its decision on `tree`.
pub fn response(decision: &Decision, tree: &Tree, keys: &[Vec<String>]) -> RateLimitResponse {
    let mut owned: Vec<Vec<&LevelStatus>> = vec![Vec::new(); keys.len()];
    for status in &decision.levels {
        let by = tree
            .levels
            .iter()
            .find(|l| l.name == status.name)
            .map_or(&[][..], |l| l.by.as_slice());
        if let Some(owner) = owner(by, keys) {
            owned[owner].push(status);
        }
    }
    RateLimitResponse {
        overall_code: code(decision.allowed) as i32,
        statuses: owned
            .iter()
            .map(|levels| descriptor_status(levels))
            .collect(),
        ..Default::default()
    }
}

/// The headers `form` asks Envoy to add for `decision`.
pub fn headers(decision: &Decision, form: ResponseHeaders) -> Vec<HeaderValue> {
    let header = |key: &str, value: String| HeaderValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    };
    match form {
        ResponseHeaders::Off => Vec::new(),
        ResponseHeaders::Draft => crate::http::headers::for_decision(decision)
            .iter()
            .filter_map(|(name, value)| {
                Some(header(name.as_str(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        ResponseHeaders::XRateLimit => {
            let enforcing: Vec<&LevelStatus> =
                decision.levels.iter().filter(|l| !l.shadow).collect();
            let Some(level) = most_constraining(&enforcing) else {
                return Vec::new();
            };
            let seconds = |us: Micros| us.div_ceil(SECOND);
            vec![
                header(
                    "x-ratelimit-limit",
                    format!(
                        "{}, {};w={}",
                        level.limit,
                        level.limit,
                        seconds(level.window)
                    ),
                ),
                header("x-ratelimit-remaining", level.remaining.to_string()),
                header("x-ratelimit-reset", seconds(level.reset_after).to_string()),
            ]
        }
    }
}

/// The descriptor a level with `by` keys is reported on: the first holding all
/// of them, else the last holding any.
fn owner(by: &[String], keys: &[Vec<String>]) -> Option<usize> {
    keys.iter()
        .position(|k| by.iter().all(|b| k.contains(b)))
        .or_else(|| keys.iter().rposition(|k| by.iter().any(|b| k.contains(b))))
}

fn code(allowed: bool) -> Code {
    if allowed { Code::Ok } else { Code::OverLimit }
}

fn descriptor_status(levels: &[&LevelStatus]) -> DescriptorStatus {
    let enforcing: Vec<&LevelStatus> = levels.iter().copied().filter(|l| !l.shadow).collect();
    let denied = enforcing.iter().any(|l| !l.allowed);
    let candidates = if enforcing.is_empty() {
        levels
    } else {
        &enforcing[..]
    };
    let Some(level) = most_constraining(candidates) else {
        return DescriptorStatus {
            code: Code::Ok as i32,
            ..Default::default()
        };
    };
    DescriptorStatus {
        code: code(!denied) as i32,
        current_limit: Some(rate_limit(level)),
        limit_remaining: u32::try_from(level.remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(proto_duration(level.reset_after)),
        ..Default::default()
    }
}

/// A denying level with the longest wait, else the one with the fewest units
/// left (on a tie, the slowest to reset).
fn most_constraining<'a>(levels: &[&'a LevelStatus]) -> Option<&'a LevelStatus> {
    let denying = levels
        .iter()
        .filter(|l| !l.allowed)
        .max_by_key(|l| l.retry_after.unwrap_or(Micros::MAX));
    denying.copied().or_else(|| {
        levels
            .iter()
            .min_by_key(|l| (l.remaining, std::cmp::Reverse(l.reset_after)))
            .copied()
    })
}

const SECOND: Micros = 1_000_000;

/// A level's limit as Envoy's `RateLimit`: a window of exactly one unit keeps
/// its unit; any other window (say `30m`) is sent as `UNKNOWN` with the limit per
/// window, and the name says the window (`category: 10 per 30m`).
fn rate_limit(level: &LevelStatus) -> RateLimit {
    let unit = match level.window {
        w if w == SECOND => Unit::Second,
        w if w == 60 * SECOND => Unit::Minute,
        w if w == 3_600 * SECOND => Unit::Hour,
        w if w == 86_400 * SECOND => Unit::Day,
        w if w == 7 * 86_400 * SECOND => Unit::Week,
        w if w == 30 * 86_400 * SECOND => Unit::Month,
        w if w == 365 * 86_400 * SECOND => Unit::Year,
        _ => Unit::Unknown,
    };
    RateLimit {
        name: format!(
            "{}: {} per {}",
            level.name,
            level.limit,
            format_duration(level.window)
        ),
        requests_per_unit: u32::try_from(level.limit).unwrap_or(u32::MAX),
        unit: unit as i32,
    }
}

fn proto_duration(us: Micros) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(us / SECOND).unwrap_or(i64::MAX),
        // Below one second, so it fits.
        nanos: i32::try_from((us % SECOND) * 1_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::google::protobuf::UInt64Value;
    use limitree::{Policy, Reason};
    use rstest::rstest;

    use super::*;

    fn descriptor(entries: &[(&str, &str)], hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
            hits_addend: hits.map(|value| UInt64Value { value }),
            ..Default::default()
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
        RateLimitRequest {
            domain: "notifications".to_owned(),
            descriptors,
            hits_addend: hits,
        }
    }

    #[test]
    fn entries_of_every_descriptor_merge_into_one_chain() {
        let q = question(&request(
            vec![
                descriptor(&[("category", "errors")], None),
                descriptor(&[("category", "errors"), ("user", "ann")], None),
            ],
            0,
        ))
        .unwrap();
        assert_eq!(q.tree, "notifications");
        assert_eq!(q.cost, 1);
        assert_eq!(
            q.descriptors.into_iter().collect::<Vec<_>>(),
            [
                ("category".to_owned(), "errors".to_owned()),
                ("user".to_owned(), "ann".to_owned())
            ]
        );
        assert_eq!(q.keys, [vec!["category"], vec!["category", "user"]]);
    }

    #[rstest]
    #[case::call_level(5, None, None, 5)]
    #[case::descriptor_overrides(5, Some(3), Some(3), 3)]
    #[case::zero_call_means_one(0, None, None, 1)]
    #[case::explicit_zero_peeks(7, Some(0), Some(0), 0)]
    fn costs(
        #[case] call: u32,
        #[case] first: Option<u64>,
        #[case] second: Option<u64>,
        #[case] cost: u64,
    ) {
        let q = question(&request(
            vec![
                descriptor(&[("category", "errors")], first),
                descriptor(&[("user", "ann")], second),
            ],
            call,
        ))
        .unwrap();
        assert_eq!(q.cost, cost);
    }

    #[rstest]
    #[case::empty_domain(RateLimitRequest { domain: String::new(), ..request(vec![descriptor(&[("a", "b")], None)], 0) }, RequestError::EmptyDomain)]
    #[case::no_descriptors(request(vec![], 0), RequestError::NoDescriptors)]
    #[case::too_many(request(vec![descriptor(&[("a", "b")], None); 65], 0), RequestError::TooManyDescriptors(65))]
    #[case::empty_descriptor(request(vec![descriptor(&[], None)], 0), RequestError::EmptyDescriptor(0))]
    #[case::conflict(
        request(vec![descriptor(&[("category", "errors")], None), descriptor(&[("category", "deploys")], None)], 0),
        RequestError::ConflictingValues { key: "category".into(), first: "errors".into(), second: "deploys".into() }
    )]
    #[case::mixed_costs(request(vec![descriptor(&[("a", "b")], Some(2)), descriptor(&[("c", "d")], None)], 4), RequestError::MixedCosts(2, 4))]
    fn bad_requests(#[case] request: RateLimitRequest, #[case] error: RequestError) {
        assert_eq!(question(&request), Err(error));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(1 << 20);
        let e = question(&request(
            vec![
                descriptor(&[("category", "a")], None),
                descriptor(&[("category", &long)], None),
            ],
            0,
        ))
        .unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
    }

    fn status(name: &str, remaining: u64, allowed: bool, retry: Option<Micros>) -> LevelStatus {
        LevelStatus {
            name: name.to_owned(),
            bucket: String::new(),
            limit: 10,
            window: 1_800 * SECOND,
            remaining,
            reset_after: 5 * SECOND,
            allowed,
            retry_after: retry,
            shadow: false,
        }
    }

    #[test]
    fn levels_are_reported_on_the_descriptor_holding_their_keys() {
        let policy = Policy::default_notifications();
        let tree = &policy.trees()[0];
        let decision = Decision {
            tree: "notifications".to_owned(),
            allowed: false,
            reason: Reason::Limited,
            retry_after: Some(3 * SECOND),
            levels: vec![
                status("global", 40, true, None),
                status("category", 0, false, Some(3 * SECOND)),
            ],
        };
        let keys = vec![vec!["user".to_owned()], vec!["category".to_owned()]];
        let r = response(&decision, tree, &keys);
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        // The global level goes to the first descriptor, category to the second.
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(r.statuses[0].limit_remaining, 40);
        assert_eq!(r.statuses[1].code, Code::OverLimit as i32);
        assert_eq!(r.statuses[1].limit_remaining, 0);
        let limit = r.statuses[1].current_limit.as_ref().unwrap();
        assert_eq!(limit.name, "category: 10 per 30m");
        assert_eq!(limit.unit, Unit::Unknown as i32);
        assert_eq!(
            r.statuses[1].duration_until_reset,
            Some(ProtoDuration {
                seconds: 5,
                nanos: 0
            })
        );
    }

    #[test]
    fn a_descriptor_no_level_uses_is_ok_without_a_limit() {
        let policy = Policy::default_notifications();
        let decision = Decision {
            tree: "notifications".to_owned(),
            allowed: true,
            reason: Reason::Ok,
            retry_after: None,
            levels: vec![status("global", 40, true, None)],
        };
        let keys = vec![vec!["category".to_owned()], vec!["path".to_owned()]];
        let r = response(&decision, &policy.trees()[0], &keys);
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert_eq!(
            r.statuses[1],
            DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            }
        );
    }

    #[test]
    fn headers_describe_the_level_that_denied() {
        let decision = Decision {
            tree: "notifications".to_owned(),
            allowed: false,
            reason: Reason::Limited,
            retry_after: Some(3 * SECOND),
            levels: vec![
                // Fewer left, but it had room: not the one to describe.
                LevelStatus {
                    limit: 100,
                    ..status("global", 2, true, None)
                },
                LevelStatus {
                    remaining: 4,
                    ..status("category", 4, false, Some(3 * SECOND))
                },
            ],
        };
        let x = headers(&decision, ResponseHeaders::XRateLimit);
        let pairs: Vec<(&str, &str)> = x
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("x-ratelimit-limit", "10, 10;w=1800"),
                ("x-ratelimit-remaining", "4"),
                ("x-ratelimit-reset", "5"),
            ]
        );
        let draft = headers(&decision, ResponseHeaders::Draft);
        assert!(draft.iter().any(|h| h.key == "ratelimit-policy"));
        assert!(
            draft
                .iter()
                .any(|h| h.key == "retry-after" && h.value == "3")
        );
        assert!(headers(&decision, ResponseHeaders::Off).is_empty());
    }

    #[rstest]
    #[case::second(SECOND, Unit::Second)]
    #[case::minute(60 * SECOND, Unit::Minute)]
    #[case::hour(3_600 * SECOND, Unit::Hour)]
    #[case::day(86_400 * SECOND, Unit::Day)]
    #[case::thirty_minutes(1_800 * SECOND, Unit::Unknown)]
    fn units(#[case] window: Micros, #[case] unit: Unit) {
        let level = LevelStatus {
            window,
            ..status("l", 1, true, None)
        };
        assert_eq!(rate_limit(&level).unit, unit as i32);
    }
}
