//! Envoy's `ShouldRateLimit`: how a `RateLimitRequest` becomes one call of
//! [`Snapshot::check_descriptors`](limitree::limiter::Snapshot::check_descriptors) and how
//! its [`Decision`] becomes a `RateLimitResponse`.
//!
//! The mapping (the README's "gRPC" section says the same):
//! - `domain` names the tree.
//! - The call is **one chain, decided all-or-nothing**: an `OVER_LIMIT` answer
//!   charged nothing anywhere. The library builds it
//!   ([`Tree::chain_for_descriptors`]): for an envoyproxy/ratelimit domain, each
//!   request descriptor matches at most one rule, and two landing on the same
//!   bucket are merged; for a native tree, the entries of every descriptor are
//!   merged into one descriptor map (a key given twice with different values
//!   is an `INVALID_ARGUMENT`; the same value twice is fine).
//! - Cost: per descriptor, its own `hits_addend`, else the request's (0 and
//!   unset both mean 1). Each bucket is charged the cost of the descriptor it
//!   is reported on (summed over merged descriptors); a descriptor of cost 0 is
//!   checked and reported but not charged, and all of them 0 is a peek.
//! - Statuses: one per request descriptor, in request order, from its
//!   [`Target`]: on a native tree each level is reported on the first
//!   descriptor whose entries hold all of the level's `by` keys (a global
//!   level: the first descriptor); a descriptor's status is its most
//!   constraining level — a denying one if any, else the one with the fewest
//!   units left. A descriptor with no limit (no rule, or no level reported on
//!   it) is `OK` without a limit, as envoyproxy/ratelimit answers descriptors
//!   that match no rule; an `unlimited` rule is `OK` with `limit_remaining` =
//!   `u32::MAX`; a `requests_per_unit: 0` rule is `OVER_LIMIT` with a limit of 0.

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use limitree::policy::{DisplayDuration, Tree, envoy};
use limitree::{Decision, LevelStatus, Micros, Target};

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
}

/// A `RateLimitRequest` as one check, borrowing the request's strings: a
/// call allocates two vectors here whatever its size (not a `String` per key
/// and value).
#[derive(Debug, Clone, PartialEq)]
pub struct Question<'a> {
    /// The tree (`domain`).
    pub tree: &'a str,
    /// The request's descriptors (for how many entries each has).
    request: &'a [RateLimitDescriptor],
    /// Every descriptor's entries, in request order, one after another.
    pairs: Vec<(&'a str, &'a str)>,
    /// Per request descriptor, the units it takes (all 0: a peek).
    pub costs: Vec<u64>,
}

impl<'a> Question<'a> {
    /// The entries per request descriptor, in order, as the library takes them.
    pub fn descriptors(&self) -> Vec<&[(&'a str, &'a str)]> {
        let mut rest = self.pairs.as_slice();
        self.lens()
            .map(|len| {
                let (descriptor, tail) = rest.split_at(len);
                rest = tail;
                descriptor
            })
            .collect()
    }

    /// How many request descriptors there are.
    pub fn len(&self) -> usize {
        self.costs.len()
    }

    /// Whether there are none (never, for a question [`question`] returned).
    pub fn is_empty(&self) -> bool {
        self.costs.is_empty()
    }

    fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        self.request.iter().map(|d| d.entries.len())
    }
}

/// Reads `request` as a question, or says why it is not one.
pub fn question(request: &RateLimitRequest) -> Result<Question<'_>, RequestError> {
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
    let mut pairs = Vec::with_capacity(request.descriptors.iter().map(|d| d.entries.len()).sum());
    let mut costs = Vec::with_capacity(request.descriptors.len());
    for (index, descriptor) in request.descriptors.iter().enumerate() {
        check_shape(index, descriptor)?;
        costs.push(descriptor.hits_addend.map_or(call_cost, |v| v.value));
        pairs.extend(
            descriptor
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str())),
        );
    }
    Ok(Question {
        tree: &request.domain,
        request: &request.descriptors,
        pairs,
        costs,
    })
}

fn check_shape(index: usize, descriptor: &RateLimitDescriptor) -> Result<(), RequestError> {
    match descriptor.entries.len() {
        0 => Err(RequestError::EmptyDescriptor(index)),
        n if n > MAX_ENTRIES => Err(RequestError::TooManyEntries { index, count: n }),
        _ => Ok(()),
    }
}

/// The answer to a question on `tree`, given its decision and what each
/// request descriptor landed on (both from `Limiter::check_descriptors`).
pub fn response(decision: &Decision, tree: &Tree, targets: &[Target]) -> RateLimitResponse {
    let rule = |rule_index: usize| tree.envoy().and_then(|d| d.domain.rules.get(rule_index));
    let statuses = targets
        .iter()
        .map(|target| match *target {
            Target::Buckets(set) => {
                descriptor_status(set.iter().filter_map(|i| decision.levels.get(i)))
            }
            Target::UnlimitedRule { .. } => DescriptorStatus {
                code: Code::Ok as i32,
                limit_remaining: u32::MAX,
                ..Default::default()
            },
            Target::Blocked { rule_index } => blocked_status(rule(rule_index)),
            Target::NoLimit => descriptor_status(std::iter::empty()),
        })
        .collect();
    RateLimitResponse {
        overall_code: code(decision.allowed) as i32,
        statuses,
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
            let Some(level) = most_constraining(decision.levels.iter().filter(|l| !l.shadow))
            else {
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

/// A `requests_per_unit: 0` rule's status: over the limit (`OK` in shadow
/// mode), a limit of 0 per the rule's window, nothing remaining.
fn blocked_status(rule: Option<&envoy::Rule>) -> DescriptorStatus {
    let shadow = rule.is_some_and(|r| r.shadow);
    DescriptorStatus {
        code: code(shadow) as i32,
        current_limit: rule.and_then(|r| match r.limit {
            envoy::RuleLimit::Blocked { window } => Some(envoy_limit(&r.name, 0, window)),
            envoy::RuleLimit::Limited(_) | envoy::RuleLimit::Unlimited => None,
        }),
        limit_remaining: 0,
        ..Default::default()
    }
}

fn code(allowed: bool) -> Code {
    if allowed { Code::Ok } else { Code::OverLimit }
}

/// The status of a descriptor reported on `levels`.
fn descriptor_status<'a>(
    levels: impl Iterator<Item = &'a LevelStatus> + Clone,
) -> DescriptorStatus {
    let enforcing = levels.clone().filter(|l| !l.shadow);
    let denied = enforcing.clone().any(|l| !l.allowed);
    let level = if enforcing.clone().next().is_some() {
        most_constraining(enforcing)
    } else {
        most_constraining(levels)
    };
    let Some(level) = level else {
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
fn most_constraining<'a>(
    levels: impl Iterator<Item = &'a LevelStatus> + Clone,
) -> Option<&'a LevelStatus> {
    let denying = levels
        .clone()
        .filter(|l| !l.allowed)
        .max_by_key(|l| l.retry_after.unwrap_or(Micros::MAX));
    denying.or_else(|| levels.min_by_key(|l| (l.remaining, std::cmp::Reverse(l.reset_after))))
}

const SECOND: Micros = 1_000_000;

/// A level's limit as Envoy's `RateLimit`: a window of exactly one unit keeps
/// its unit; any other window (say `30m`) is sent as `UNKNOWN` with the limit per
/// window, and the name says the window (`category: 10 per 30m`).
fn rate_limit(level: &LevelStatus) -> RateLimit {
    envoy_limit(&level.name, level.limit, level.window)
}

/// `limit` per `window` of the level or rule `name`, as Envoy's `RateLimit`.
fn envoy_limit(name: &str, limit: u64, window: Micros) -> RateLimit {
    let unit = match window {
        w if w == SECOND => Unit::Second,
        w if w == 60 * SECOND => Unit::Minute,
        w if w == 3_600 * SECOND => Unit::Hour,
        w if w == 86_400 * SECOND => Unit::Day,
        w if w == 7 * 86_400 * SECOND => Unit::Week,
        w if w == 30 * 86_400 * SECOND => Unit::Month,
        w if w == 365 * 86_400 * SECOND => Unit::Year,
        _ => Unit::Unknown,
    };
    use std::fmt::Write as _;
    // One allocation: the proto wants an owned name.
    let mut text = String::with_capacity(name.len() + 32);
    let _ = write!(text, "{name}: {limit} per {}", DisplayDuration(window));
    RateLimit {
        name: text,
        requests_per_unit: u32::try_from(limit).unwrap_or(u32::MAX),
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
    use limitree::{BucketSet, Policy, Reason};
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
    fn entries_are_kept_per_descriptor_in_order() {
        let request = request(
            vec![
                descriptor(&[("category", "errors")], None),
                descriptor(&[("category", "errors"), ("user", "ann")], None),
            ],
            0,
        );
        let q = question(&request).unwrap();
        assert_eq!(q.tree, "notifications");
        assert_eq!(q.costs, [1, 1]);
        assert_eq!(
            q.descriptors(),
            [
                vec![("category", "errors")],
                vec![("category", "errors"), ("user", "ann")]
            ]
        );
    }

    #[rstest]
    #[case::call_level(5, None, None, [5, 5])]
    #[case::descriptor_overrides(5, Some(3), Some(3), [3, 3])]
    #[case::zero_call_means_one(0, None, None, [1, 1])]
    #[case::explicit_zero_peeks(7, Some(0), Some(0), [0, 0])]
    #[case::each_descriptor_its_own(4, Some(2), None, [2, 4])]
    fn costs(
        #[case] call: u32,
        #[case] first: Option<u64>,
        #[case] second: Option<u64>,
        #[case] expected: [u64; 2],
    ) {
        let request = request(
            vec![
                descriptor(&[("category", "errors")], first),
                descriptor(&[("user", "ann")], second),
            ],
            call,
        );
        let q = question(&request).unwrap();
        assert_eq!(q.costs, expected);
    }

    #[rstest]
    #[case::empty_domain(RateLimitRequest { domain: String::new(), ..request(vec![descriptor(&[("a", "b")], None)], 0) }, RequestError::EmptyDomain)]
    #[case::no_descriptors(request(vec![], 0), RequestError::NoDescriptors)]
    #[case::too_many(request(vec![descriptor(&[("a", "b")], None); 65], 0), RequestError::TooManyDescriptors(65))]
    #[case::empty_descriptor(request(vec![descriptor(&[], None)], 0), RequestError::EmptyDescriptor(0))]
    fn bad_requests(#[case] request: RateLimitRequest, #[case] error: RequestError) {
        assert_eq!(question(&request), Err(error));
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
            share: None,
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
        let targets = [
            Target::Buckets(BucketSet::one(0)),
            Target::Buckets(BucketSet::one(1)),
        ];
        let r = response(&decision, tree, &targets);
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
        let targets = [Target::Buckets(BucketSet::one(0)), Target::NoLimit];
        let r = response(&decision, &policy.trees()[0], &targets);
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

    #[test]
    fn unlimited_and_blocking_rules_report_as_envoyproxy_ratelimit_does() {
        let domain = envoy::EnvoyConfig::from_yaml_str(
            "domain: d\ndescriptors:\n  - key: closed\n    rate_limit:\n      unit: second\n      requests_per_unit: 0\n  - key: free\n    rate_limit:\n      unlimited: true\n",
            "d.yaml",
        )
        .unwrap();
        let policy = Policy::from_envoy_domains(vec![domain]).unwrap();
        let decision = Decision {
            tree: "d".to_owned(),
            allowed: false,
            reason: Reason::InsufficientCapacity,
            retry_after: None,
            levels: Vec::new(),
        };
        let targets = [
            Target::UnlimitedRule { rule_index: 1 },
            Target::Blocked { rule_index: 0 },
        ];
        let r = response(&decision, &policy.trees()[0], &targets);
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        assert_eq!(r.statuses[0].code, Code::Ok as i32);
        assert_eq!(r.statuses[0].limit_remaining, u32::MAX);
        assert_eq!(r.statuses[1].code, Code::OverLimit as i32);
        let limit = r.statuses[1].current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.name.as_str(), limit.requests_per_unit, limit.unit),
            ("closed: 0 per 1s", 0, Unit::Second as i32)
        );
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
