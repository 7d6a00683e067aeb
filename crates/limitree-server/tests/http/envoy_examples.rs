//! Every example of envoyproxy/ratelimit's README "Configuration" section,
//! served by `limitree serve --config EXAMPLE.yaml` (the real binary) and
//! asked over gRPC by a real tonic client: the descriptors the README
//! describes, enough calls (and `hits_addend`) to cross each limit, and every
//! answer checked — `overall_code`, and per descriptor its `code`,
//! `current_limit` (rule, `requests_per_unit`, `unit`) and `limit_remaining`.
//!
//! The YAML files are the library's (`crates/limitree/tests/envoy_examples/`),
//! whose unit tests check the same examples at the matching level.
//!
//! Where limitree differs on purpose, the case says so: a call that is
//! `OVER_LIMIT` charges nothing anywhere, where envoyproxy/ratelimit still
//! counts it against the descriptors that had room ("counter pollution").
//!
//! Time: these are envoyproxy/ratelimit's epoch-aligned windows of one unit
//! (second, minute, …) on the server's real clock, which a test cannot stop.
//! A scenario takes milliseconds, so it rarely straddles a window boundary;
//! when it does, the answers show it (a `duration_until_reset` that grows
//! back), and the scenario runs again on a fresh server instead of failing.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use rstest::rstest;

use crate::support::rls::{ask, client, code, descriptor};
use crate::support::served::Served;
use Code::{Ok as OK, OverLimit as OVER};
use Unit::{Day, Hour, Minute, Second};

/// What one descriptor's status must be.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A counted rule: the code, the rule's name, its limit and unit, and
    /// what is left.
    Limit {
        code: Code,
        rule: &'static str,
        requests_per_unit: u32,
        unit: Unit,
        remaining: u32,
    },
    /// An `unlimited` rule: `OK`, no limit, `u32::MAX` remaining.
    Unlimited,
    /// No rule matched (or it was replaced): `OK`, no limit.
    NoLimit,
}

fn ok(rule: &'static str, requests_per_unit: u32, unit: Unit, remaining: u32) -> Want {
    Want::Limit {
        code: Code::Ok,
        rule,
        requests_per_unit,
        unit,
        remaining,
    }
}

fn over(rule: &'static str, requests_per_unit: u32, unit: Unit) -> Want {
    Want::Limit {
        code: Code::OverLimit,
        rule,
        requests_per_unit,
        unit,
        remaining: 0,
    }
}

/// One `ShouldRateLimit` call and the answer it must get.
#[derive(Debug, Clone)]
struct Call {
    /// Its descriptors, each a list of entries.
    descriptors: Vec<Vec<(&'static str, &'static str)>>,
    /// The request's `hits_addend` (0: one).
    hits: u32,
    overall: Code,
    statuses: Vec<Want>,
}

/// A call of `descriptors` costing `hits`, answered `overall` with `statuses`.
fn call(
    descriptors: &[&[(&'static str, &'static str)]],
    hits: u32,
    overall: Code,
    statuses: &[Want],
) -> Call {
    Call {
        descriptors: descriptors.iter().map(|d| d.to_vec()).collect(),
        hits,
        overall,
        statuses: statuses.to_vec(),
    }
}

/// `database=users` and `database=default` have 500 a second each; any other
/// database no limit.
fn ex1() -> Vec<Call> {
    let users: &[(&str, &str)] = &[("database", "users")];
    let rule = "database=users";
    vec![
        call(&[users], 499, OK, &[ok(rule, 500, Second, 1)]),
        call(&[users], 1, OK, &[ok(rule, 500, Second, 0)]),
        call(&[users], 1, OVER, &[over(rule, 500, Second)]),
        call(
            &[&[("database", "default")]],
            500,
            OK,
            &[ok("database=default", 500, Second, 0)],
        ),
        call(&[&[("database", "orders")]], 1_000, OK, &[Want::NoLimit]),
    ]
}

/// The README's request of two descriptors: 5 marketing messages a day to a
/// number, 100 messages a day to any number. The sixth marketing message is
/// over the limit, and — the intended difference — it is not counted against
/// the number's 100 either (envoyproxy/ratelimit would leave 94, not 95).
fn ex2() -> Vec<Call> {
    let marketing: &[(&str, &str)] = &[("message_type", "marketing"), ("to_number", "2061111111")];
    let number: &[(&str, &str)] = &[("to_number", "2061111111")];
    let m = "message_type=marketing.to_number";
    let mut calls: Vec<Call> = (0..5)
        .map(|i| {
            call(
                &[marketing, number],
                1,
                OK,
                &[ok(m, 5, Day, 4 - i), ok("to_number", 100, Day, 99 - i)],
            )
        })
        .collect();
    calls.extend([
        call(
            &[marketing, number],
            1,
            OVER,
            &[over(m, 5, Day), ok("to_number", 100, Day, 95)],
        ),
        // The denied call charged nothing: the number had 95 left, and this
        // call leaves 94 (envoyproxy/ratelimit: 93).
        call(&[number], 1, OK, &[ok("to_number", 100, Day, 94)]),
        // Another number has buckets of its own.
        call(
            &[&[("message_type", "marketing"), ("to_number", "2062222222")]],
            1,
            OK,
            &[ok(m, 5, Day, 4)],
        ),
        // The placeholder level alone has no limit.
        call(&[&[("message_type", "marketing")]], 1, OK, &[Want::NoLimit]),
    ]);
    calls
}

/// 10 a second per IP; 50.0.0.5 (`requests_per_unit: 0`) is always over the
/// limit, and a call that carries it charges nothing for the other IP.
fn ex3() -> Vec<Call> {
    let ip: &[(&str, &str)] = &[("remote_address", "50.0.0.1")];
    let blocked: &[(&str, &str)] = &[("remote_address", "50.0.0.5")];
    let other: &[(&str, &str)] = &[("remote_address", "50.0.0.2")];
    let r = "remote_address";
    vec![
        call(&[ip], 9, OK, &[ok(r, 10, Second, 1)]),
        call(&[ip], 1, OK, &[ok(r, 10, Second, 0)]),
        call(&[ip], 1, OVER, &[over(r, 10, Second)]),
        call(
            &[blocked],
            1,
            OVER,
            &[over("remote_address=50.0.0.5", 0, Second)],
        ),
        call(
            &[other, blocked],
            1,
            OVER,
            &[
                ok(r, 10, Second, 10),
                over("remote_address=50.0.0.5", 0, Second),
            ],
        ),
        call(&[other], 1, OK, &[ok(r, 10, Second, 9)]),
    ]
}

/// A two-entry descriptor does not reach a one-level rule...
fn ex4_flat() -> Vec<Call> {
    let rule = "key=value";
    vec![
        call(
            &[&[("key", "value"), ("subkey", "subvalue")]],
            301,
            OK,
            &[Want::NoLimit],
        ),
        call(&[&[("key", "value")]], 300, OK, &[ok(rule, 300, Second, 0)]),
        call(&[&[("key", "value")]], 1, OVER, &[over(rule, 300, Second)]),
    ]
}

/// ...but does reach the nested one, which the one-entry descriptor does not.
fn ex4_nested() -> Vec<Call> {
    let two: &[(&str, &str)] = &[("key", "value"), ("subkey", "subvalue")];
    let rule = "key=value.subkey";
    vec![
        call(&[two], 300, OK, &[ok(rule, 300, Second, 0)]),
        call(&[two], 1, OVER, &[over(rule, 300, Second)]),
        call(&[&[("key", "value")]], 1, OK, &[Want::NoLimit]),
    ]
}

/// `ldap` is unlimited (OK, `u32::MAX` left, never counted); `azure` has 100
/// a minute. A call with both is over when azure is, and ldap stays OK.
fn ex5() -> Vec<Call> {
    let ldap: &[(&str, &str)] = &[("ldap", "cn=admin")];
    let azure: &[(&str, &str)] = &[("azure", "blob")];
    vec![
        call(&[ldap], 1_000_000, OK, &[Want::Unlimited]),
        call(&[azure], 99, OK, &[ok("azure", 100, Minute, 1)]),
        call(
            &[ldap, azure],
            1,
            OK,
            &[Want::Unlimited, ok("azure", 100, Minute, 0)],
        ),
        call(
            &[ldap, azure],
            1,
            OVER,
            &[Want::Unlimited, over("azure", 100, Minute)],
        ),
    ]
}

/// `user-a`'s rule is in shadow mode: past its 10 a second it is still `OK`
/// (with 0 left); `user-b`'s 20 a second are enforced.
fn ex6() -> Vec<Call> {
    let a: &[(&str, &str)] = &[("service", "auth-service"), ("user", "user-a")];
    let b: &[(&str, &str)] = &[("service", "auth-service"), ("user", "user-b")];
    let ra = "service.user=user-a";
    let rb = "service.user=user-b";
    vec![
        call(&[a], 10, OK, &[ok(ra, 10, Second, 0)]),
        call(&[a], 1, OK, &[ok(ra, 10, Second, 0)]),
        call(&[a], 5, OK, &[ok(ra, 10, Second, 0)]),
        call(&[b], 20, OK, &[ok(rb, 20, Second, 0)]),
        call(&[b], 1, OVER, &[over(rb, 20, Second)]),
        // A shadow breach next to an enforced one: over, because of user-b.
        call(
            &[a, b],
            1,
            OVER,
            &[ok(ra, 10, Second, 0), over(rb, 20, Second)],
        ),
    ]
}

/// The README's three requests: `(key_1, value_1), (user, bkthomps)` has 5 a
/// second (`specific_limit`); with `(key_2, value_2), (user, bkthomps)` in the
/// same call that rule is replaced (its descriptor is OK without a limit, its
/// bucket untouched) and the 10 a second apply.
fn ex7() -> Vec<Call> {
    let first: &[(&str, &str)] = &[("key_1", "value_1"), ("user", "bkthomps")];
    let second: &[(&str, &str)] = &[("key_2", "value_2"), ("user", "bkthomps")];
    let replacing = "key_2=value_2.user=bkthomps";
    vec![
        call(&[first], 4, OK, &[ok("specific_limit", 5, Second, 1)]),
        call(
            &[first, second],
            10,
            OK,
            &[Want::NoLimit, ok(replacing, 10, Second, 0)],
        ),
        call(
            &[first, second],
            1,
            OVER,
            &[Want::NoLimit, over(replacing, 10, Second)],
        ),
        // The replaced rule kept its count: one left of 5.
        call(&[first], 1, OK, &[ok("specific_limit", 5, Second, 0)]),
        call(&[first], 1, OVER, &[over("specific_limit", 5, Second)]),
        call(&[second], 1, OVER, &[over(replacing, 10, Second)]),
    ]
}

/// `key1` with any value: 10 a minute, each value its own bucket
/// (`detailed_metric` changes only metrics); `key1=value1`: 20 a minute.
fn ex8() -> Vec<Call> {
    let unspecified: &[(&str, &str)] = &[("key1", "unspecified_value")];
    let exact: &[(&str, &str)] = &[("key1", "value1")];
    vec![
        call(&[unspecified], 10, OK, &[ok("key1", 10, Minute, 0)]),
        call(&[unspecified], 1, OVER, &[over("key1", 10, Minute)]),
        call(
            &[&[("key1", "unspecified_value2")]],
            1,
            OK,
            &[ok("key1", 10, Minute, 9)],
        ),
        call(&[exact], 20, OK, &[ok("key1=value1", 20, Minute, 0)]),
        call(&[exact], 1, OVER, &[over("key1=value1", 20, Minute)]),
    ]
}

/// `value*`: `value1` and `value2` each get 20 a minute of their own.
fn ex9_trailing() -> Vec<Call> {
    let rule = "key1=value*";
    vec![
        call(&[&[("key1", "value1")]], 20, OK, &[ok(rule, 20, Minute, 0)]),
        call(&[&[("key1", "value1")]], 1, OVER, &[over(rule, 20, Minute)]),
        call(&[&[("key1", "value2")]], 1, OK, &[ok(rule, 20, Minute, 19)]),
        call(&[&[("key1", "valu")]], 1, OK, &[Want::NoLimit]),
    ]
}

/// `/api/*/action`: the star stands for one run of characters mid-value.
fn ex9_middle() -> Vec<Call> {
    let path: &[(&str, &str)] = &[("path", "/api/user-id/action")];
    let rule = "path=/api/*/action";
    vec![
        call(&[path], 20, OK, &[ok(rule, 20, Minute, 0)]),
        call(&[path], 1, OVER, &[over(rule, 20, Minute)]),
        call(&[&[("path", "/api/123/other")]], 1, OK, &[Want::NoLimit]),
    ]
}

/// `/api/*/resource/*/action`: two stars.
fn ex9_multiple() -> Vec<Call> {
    let route: &[(&str, &str)] = &[("route", "/api/v2/resource/456/action")];
    let rule = "route=/api/*/resource/*/action";
    vec![
        call(&[route], 20, OK, &[ok(rule, 20, Minute, 0)]),
        call(&[route], 1, OVER, &[over(rule, 20, Minute)]),
        call(
            &[&[("route", "/api/v2/other/456/action")]],
            1,
            OK,
            &[Want::NoLimit],
        ),
    ]
}

/// Three key-only levels: 60 a minute per (route, method, subject).
fn ex10() -> Vec<Call> {
    let d: &[(&str, &str)] = &[
        ("route", "api"),
        ("http_method", "GET"),
        ("subject_id", "123"),
    ];
    let rule = "route.http_method.subject_id";
    vec![
        call(&[d], 60, OK, &[ok(rule, 60, Minute, 0)]),
        call(&[d], 1, OVER, &[over(rule, 60, Minute)]),
        call(
            &[&[
                ("route", "api"),
                ("http_method", "GET"),
                ("subject_id", "456"),
            ]],
            1,
            OK,
            &[ok(rule, 60, Minute, 59)],
        ),
    ]
}

/// A wildcard value between key-only levels: `read*` matches `readfile`, not
/// `write`.
fn ex10_wildcard() -> Vec<Call> {
    let read: &[(&str, &str)] = &[
        ("user", "alice"),
        ("action", "readfile"),
        ("resource", "documents"),
    ];
    let rule = "user.action=read*.resource";
    vec![
        call(&[read], 100, OK, &[ok(rule, 100, Minute, 0)]),
        call(&[read], 1, OVER, &[over(rule, 100, Minute)]),
        call(
            &[&[
                ("user", "alice"),
                ("action", "write"),
                ("resource", "documents"),
            ]],
            1,
            OK,
            &[Want::NoLimit],
        ),
    ]
}

/// `share_threshold: true`: every `files/*` value shares one 10 an hour;
/// without it, each `files_no_share/*` value has its own.
fn ex11() -> Vec<Call> {
    let shared = "files=files/*";
    let isolated = "files_no_share=files_no_share/*";
    vec![
        call(
            &[&[("files", "files/a.pdf")]],
            9,
            OK,
            &[ok(shared, 10, Hour, 1)],
        ),
        call(
            &[&[("files", "files/b.pdf")]],
            1,
            OK,
            &[ok(shared, 10, Hour, 0)],
        ),
        call(
            &[&[("files", "files/c.pdf")]],
            1,
            OVER,
            &[over(shared, 10, Hour)],
        ),
        call(
            &[&[("files_no_share", "files_no_share/a.pdf")]],
            10,
            OK,
            &[ok(isolated, 10, Hour, 0)],
        ),
        call(
            &[&[("files_no_share", "files_no_share/b.pdf")]],
            1,
            OK,
            &[ok(isolated, 10, Hour, 9)],
        ),
    ]
}

/// A shared wildcard level above a key-only one: `api/v1` and `api/v2` share
/// the bucket of a method; another method has its own.
fn ex11_metrics() -> Vec<Call> {
    let rule = "route=api/*.method";
    vec![
        call(
            &[&[("route", "api/v1"), ("method", "GET")]],
            60,
            OK,
            &[ok(rule, 60, Minute, 0)],
        ),
        call(
            &[&[("route", "api/v2"), ("method", "GET")]],
            1,
            OVER,
            &[over(rule, 60, Minute)],
        ),
        call(
            &[&[("route", "api/v2"), ("method", "POST")]],
            1,
            OK,
            &[ok(rule, 60, Minute, 59)],
        ),
    ]
}

#[rstest]
#[case::ex1_mongo_cps("ex1_mongo_cps", "mongo_cps", ex1())]
#[case::ex2_messaging_over_limit_charges_nothing("ex2_messaging", "messaging", ex2())]
#[case::ex3_per_ip_and_requests_per_unit_0("ex3_edge_proxy_per_ip", "edge_proxy_per_ip", ex3())]
#[case::ex4_flat_rule_not_reached_by_two_entries("ex4_flat", "example4", ex4_flat())]
#[case::ex4_nested_rule_reached_by_two_entries("ex4_nested", "example4", ex4_nested())]
#[case::ex5_unlimited("ex5_internal", "internal", ex5())]
#[case::ex6_shadow_mode("ex6_shadow_mode", "example6", ex6())]
#[case::ex7_replaces("ex7_replaces", "example7", ex7())]
#[case::ex8_detailed_metric("ex8_detailed_metric", "example8", ex8())]
#[case::ex9_wildcard_trailing("ex9_wildcard_trailing", "example9", ex9_trailing())]
#[case::ex9_wildcard_middle("ex9_wildcard_middle", "example9", ex9_middle())]
#[case::ex9_wildcard_multiple("ex9_wildcard_multiple", "example9", ex9_multiple())]
#[case::ex10_value_to_metric("ex10_value_to_metric", "example10", ex10())]
#[case::ex10_value_to_metric_wildcard(
    "ex10_value_to_metric_wildcard",
    "example10_wildcard",
    ex10_wildcard()
)]
#[case::ex11_share_threshold("ex11_share_threshold", "example11", ex11())]
#[case::ex11_share_threshold_nested(
    "ex11_share_threshold_metrics",
    "example11_metrics",
    ex11_metrics()
)]
#[tokio::test]
async fn readme_example(#[case] file: &str, #[case] domain: &str, #[case] calls: Vec<Call>) {
    let path = format!(
        "{}/../limitree/tests/envoy_examples/{file}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let served = Served::start(&["--http", "127.0.0.1:0", "--config", &path]);
        let mut client = client(&served).await;
        let mut answers = Vec::with_capacity(calls.len());
        for c in &calls {
            answers.push(ask(&mut client, rate_limit_request(domain, c)).await);
        }
        if let Some(at) = window_rolled_over(&answers) {
            eprintln!(
                "{file}: a window ended before call {at} (attempt {attempt} of {ATTEMPTS}); again on a fresh server"
            );
            continue;
        }
        for (i, (c, answer)) in calls.iter().zip(&answers).enumerate() {
            check(
                &format!("{file}, call {i} ({:?})", c.descriptors),
                c,
                answer,
            );
        }
        return;
    }
    panic!("{file}: every attempt straddled a window boundary");
}

fn rate_limit_request(domain: &str, c: &Call) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: c.descriptors.iter().map(|d| descriptor(d)).collect(),
        hits_addend: c.hits,
    }
}

fn check(context: &str, c: &Call, answer: &RateLimitResponse) {
    assert_eq!(
        code(answer.overall_code),
        c.overall,
        "{context}: {answer:?}"
    );
    assert_eq!(
        answer.statuses.len(),
        c.statuses.len(),
        "{context}: one status per descriptor: {answer:?}"
    );
    for (n, (want, got)) in c.statuses.iter().zip(&answer.statuses).enumerate() {
        let context = format!("{context}, status {n}: {got:?}");
        match *want {
            Want::Limit {
                code: want_code,
                rule,
                requests_per_unit,
                unit,
                remaining,
            } => {
                assert_eq!(code(got.code), want_code, "{context}");
                let limit = got.current_limit.as_ref().expect(&context);
                let window = match unit {
                    Second => "1s",
                    Minute => "1m",
                    Hour => "1h",
                    Day => "1d",
                    other => panic!("no example uses {other:?}"),
                };
                assert_eq!(
                    limit.name,
                    format!("{rule}: {requests_per_unit} per {window}"),
                    "{context}"
                );
                assert_eq!(limit.requests_per_unit, requests_per_unit, "{context}");
                assert_eq!(limit.unit, unit as i32, "{context}");
                assert_eq!(got.limit_remaining, remaining, "{context}");
            }
            Want::Unlimited => {
                assert_eq!(code(got.code), Code::Ok, "{context}");
                assert_eq!(got.current_limit, None, "{context}");
                assert_eq!(got.limit_remaining, u32::MAX, "{context}");
            }
            Want::NoLimit => assert_eq!(
                *got,
                DescriptorStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                },
                "{context}"
            ),
        }
    }
}

/// The first call at which a window of some unit had ended since an earlier
/// call: its time to reset grew back. Within one epoch-aligned window every
/// bucket of a unit resets at the same instant, so the time left only
/// shrinks; a bucket with nothing counted reports no time left and says
/// nothing.
fn window_rolled_over(answers: &[RateLimitResponse]) -> Option<usize> {
    let mut left: Vec<(i32, std::time::Duration)> = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        for status in &answer.statuses {
            let (Some(limit), Some(reset)) = (&status.current_limit, status.duration_until_reset)
            else {
                continue;
            };
            let reset = std::time::Duration::new(
                u64::try_from(reset.seconds).unwrap_or(0),
                u32::try_from(reset.nanos).unwrap_or(0),
            );
            if reset.is_zero() {
                continue;
            }
            match left.iter_mut().find(|(unit, _)| *unit == limit.unit) {
                Some((_, last)) if reset > *last => return Some(i),
                Some((_, last)) => *last = reset,
                None => left.push((limit.unit, reset)),
            }
        }
    }
    None
}

/// The boundary check itself: time left that shrinks is one window; time
/// left that grows back is a new one; buckets with nothing counted (no time
/// left) and other units say nothing.
#[test]
fn a_window_boundary_is_seen_in_the_time_left() {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::RateLimit;
    use envoy_types::pb::google::protobuf::Duration;
    let answer = |statuses: &[(Unit, i32)]| RateLimitResponse {
        statuses: statuses
            .iter()
            .map(|&(unit, millis)| DescriptorStatus {
                current_limit: Some(RateLimit {
                    unit: unit as i32,
                    ..Default::default()
                }),
                duration_until_reset: Some(Duration {
                    seconds: 0,
                    nanos: millis * 1_000_000,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let shrinking = [
        answer(&[(Second, 900)]),
        answer(&[(Second, 0), (Minute, 950)]),
        answer(&[(Second, 850)]),
    ];
    assert_eq!(window_rolled_over(&shrinking), None);
    let rolled = [
        answer(&[(Second, 40)]),
        answer(&[(Minute, 10)]),
        answer(&[(Second, 990)]),
    ];
    assert_eq!(window_rolled_over(&rolled), Some(2));
}
