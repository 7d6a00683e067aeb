//! Envoy's `ShouldRateLimit` and `grpc.health.v1.Health` over real sockets,
//! against `limitree serve` (a child process), with a real tonic client.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::google::protobuf::UInt64Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::rls::{ask, channel, client, code, descriptor, request};
use crate::support::served::{Served, write_config};

#[tokio::test]
async fn the_default_tree_over_grpc_denies_the_eleventh_and_charges_nothing_for_it() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut client = client(&served).await;
    let errors = || request("notifications", vec![descriptor(&[("category", "errors")])]);
    for i in 0..10 {
        let r = ask(&mut client, errors()).await;
        assert_eq!(code(r.overall_code), Code::Ok, "call {i}");
        assert_eq!(r.statuses.len(), 1);
        // The category level (fewest left) is the descriptor's status.
        assert_eq!(r.statuses[0].limit_remaining, 9 - i);
    }
    let denied = ask(&mut client, errors()).await;
    assert_eq!(code(denied.overall_code), Code::OverLimit);
    let status = &denied.statuses[0];
    assert_eq!(code(status.code), Code::OverLimit);
    assert_eq!(status.limit_remaining, 0);
    let limit = status
        .current_limit
        .as_ref()
        .expect("the limit that denied");
    assert_eq!(limit.name, "category: 10 per 30m");
    assert_eq!(limit.requests_per_unit, 10);
    let reset = status.duration_until_reset.expect("a reset time");
    assert!(reset.seconds > 0 && reset.seconds <= 1800, "{reset:?}");

    // The denial charged nothing: the global level still has 90 of 100. A
    // descriptor holding no level's key reports the global level (the first
    // descriptor gets the keyless level).
    let other = ask(
        &mut client,
        request(
            "notifications",
            vec![
                descriptor(&[("path", "/x")]),
                descriptor(&[("category", "deploys")]),
            ],
        ),
    )
    .await;
    assert_eq!(code(other.overall_code), Code::Ok);
    assert_eq!(
        other.statuses[0].limit_remaining, 89,
        "global after 11 calls, one denied"
    );
    assert_eq!(other.statuses[1].limit_remaining, 9);
}

#[tokio::test]
async fn hits_addend_costs_and_an_explicit_zero_only_reports() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut client = client(&served).await;
    let mut five = request("notifications", vec![descriptor(&[("category", "errors")])]);
    five.hits_addend = 5;
    assert_eq!(
        ask(&mut client, five.clone()).await.statuses[0].limit_remaining,
        5
    );

    let mut peek = five.clone();
    peek.descriptors[0].hits_addend = Some(UInt64Value { value: 0 });
    let r = ask(&mut client, peek.clone()).await;
    assert_eq!(code(r.overall_code), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 5, "a peek charges nothing");
    assert_eq!(ask(&mut client, peek).await.statuses[0].limit_remaining, 5);

    // 6 does not fit in the 5 left: denied, nothing charged.
    let mut six = five.clone();
    six.hits_addend = 6;
    assert_eq!(
        code(ask(&mut client, six).await.overall_code),
        Code::OverLimit
    );
    assert_eq!(code(ask(&mut client, five).await.overall_code), Code::Ok);
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_with_a_message() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut client = client(&served).await;
    let cases = [
        (
            request("", vec![descriptor(&[("category", "a")])]),
            "`domain` is empty",
        ),
        (request("notifications", vec![]), "no descriptors"),
        (
            request(
                "notifications",
                vec![
                    descriptor(&[("category", "a")]),
                    descriptor(&[("category", "b")]),
                ],
            ),
            "given twice with different values",
        ),
        (
            request("notifications", vec![descriptor(&[("category", "a")]); 65]),
            "at most 64 are accepted",
        ),
        (
            request(
                "notifications",
                vec![descriptor(&[("category", &"v".repeat(300))])],
            ),
            "longer than 256 bytes",
        ),
    ];
    for (r, needle) in cases {
        let status = client.should_rate_limit(r).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{needle}: {status:?}"
        );
        assert!(status.message().contains(needle), "{needle}: {status:?}");
    }
    // Messages past the 64 KiB cap are refused by the transport before they
    // are decoded; and nothing was charged by any of the above.
    let many = request(
        "notifications",
        vec![descriptor(&[("category", "a")]); 10_000],
    );
    let status = client.should_rate_limit(many).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let huge = request(
        "notifications",
        vec![descriptor(&[("category", &"v".repeat(1 << 20))])],
    );
    let status = client.should_rate_limit(huge).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let mut max = request("notifications", vec![descriptor(&[("category", "a")])]);
    max.hits_addend = u32::MAX;
    let status = client.should_rate_limit(max).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let mut max64 = request("notifications", vec![descriptor(&[("category", "a")])]);
    max64.descriptors[0].hits_addend = Some(UInt64Value { value: u64::MAX });
    let status = client.should_rate_limit(max64).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let after = ask(
        &mut client,
        request("notifications", vec![descriptor(&[("category", "a")])]),
    )
    .await;
    assert_eq!(after.statuses[0].limit_remaining, 9);
}

#[tokio::test]
async fn an_unknown_domain_is_ok_or_unknown_as_configured() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut client = client(&served).await;
    let r = ask(
        &mut client,
        request("nope", vec![descriptor(&[("a", "b")])]),
    )
    .await;
    assert_eq!(code(r.overall_code), Code::Ok);
    assert_eq!(r.statuses.len(), 1);
    served.wait_for_line(
        "domain `nope`, which names no tree",
        crate::support::poll::SOON,
    );

    let path = write_config(
        "unknown-domain-error.toml",
        "[server]\nunknown_domain = \"error\"\n",
    );
    let strict = Served::start(&["--http", "127.0.0.1:0", "--config", path.to_str().unwrap()]);
    let mut client = self::client(&strict).await;
    let r = ask(
        &mut client,
        request("nope", vec![descriptor(&[("a", "b")])]),
    )
    .await;
    assert_eq!(code(r.overall_code), Code::Unknown);
}

/// A call's log lines carry the `x-request-id` metadata Envoy sends; without
/// one (or with one that is not a sane id) the call gets a fresh UUID. The
/// unknown-domain warning is the log line a call makes at `info`.
#[tokio::test]
async fn log_lines_of_a_call_carry_its_x_request_id() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut client = client(&served).await;
    let call = |domain: &str, id: Option<&str>| {
        let mut r = tonic::Request::new(request(domain, vec![descriptor(&[("a", "b")])]));
        if let Some(id) = id {
            r.metadata_mut()
                .insert("x-request-id", id.parse().expect("a metadata value"));
        }
        r
    };
    client
        .should_rate_limit(call("first", Some("envoy-req-42")))
        .await
        .unwrap();
    let line = served.wait_for_line("domain `first`", crate::support::poll::SOON);
    assert!(line.contains("request_id=envoy-req-42"), "{line}");

    for (domain, id) in [("second", None), ("third", Some("two words"))] {
        client.should_rate_limit(call(domain, id)).await.unwrap();
        let line = served.wait_for_line(&format!("domain `{domain}`"), crate::support::poll::SOON);
        let at = line.find("request_id=").expect("a request id") + "request_id=".len();
        let generated: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        assert!(
            uuid::Uuid::parse_str(&generated).is_ok(),
            "{domain}: a fresh UUID, not {generated:?}: {line}"
        );
    }
}

#[tokio::test]
async fn the_health_service_says_serving() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let channel = channel(&served).await;
    let mut health = HealthClient::new(channel);
    for service in ["", "envoy.service.ratelimit.v3.RateLimitService"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[test]
fn grpc_off_serves_http_only() {
    let served = Served::start(&["--http", "127.0.0.1:0", "--grpc", "off"]);
    assert_eq!(served.grpc, None);
    assert!(!served.early.iter().any(|l| l.contains("gRPC listening")));
}

/// Three `limitree serve` processes on one Redis, 5,000 concurrent
/// `ShouldRateLimit` calls over 20 categories × 10 users, each with the
/// descriptors `[category]` and `[category, user]`, on a tree of a global
/// (150), a per-category (10) and a per-user (2) level: exactly 150 admitted,
/// and a peek afterwards shows every level charged exactly by the calls
/// admitted for it — the denied ones consumed nothing anywhere.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_redis_admit_exactly_across_descriptors() {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use crate::redis_support::RedisServer;
    use crate::support::server::level;

    let redis = RedisServer::start(&[]);
    let config = write_config(
        "grpc-three-processes.toml",
        r#"
[store]
timeout = "5s"

[[trees]]
name = "api"
[[trees.levels]]
name = "global"
limit = 150
window = "30m"
algorithm = "fixed_window"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "30m"
algorithm = "sliding_window"
[[trees.levels]]
name = "user"
by = ["category", "user"]
limit = 2
window = "30m"
algorithm = "sliding_log"
"#,
    );
    let url = redis.url();
    let quiet = ("RUST_LOG", "warn,limitree_server::server=info");
    let servers: Vec<Served> = (0..3)
        .map(|_| {
            Served::start_with_env(
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "--redis",
                    &url,
                    "--http",
                    "127.0.0.1:0",
                ],
                &[quiet],
            )
        })
        .collect();
    let mut clients = Vec::new();
    for served in &servers {
        clients.push(client(served).await);
    }

    const CALLS: usize = 5_000;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let mut client = clients[i % 3].clone();
        let (category, user) = (format!("c{}", i % 20), format!("u{}", (i / 20) % 10));
        tasks.spawn(async move {
            let r = request(
                "api",
                vec![
                    descriptor(&[("category", &category)]),
                    descriptor(&[("category", &category), ("user", &user)]),
                ],
            );
            let answer = client.should_rate_limit(r).await.expect("an answer");
            (category, user, answer.into_inner().overall_code)
        });
    }
    let mut admitted: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        let (category, user, overall) = joined.unwrap();
        if code(overall) == Code::Ok {
            *admitted.entry((category, user)).or_default() += 1;
            total += 1;
        } else {
            assert_eq!(code(overall), Code::OverLimit);
        }
    }
    assert_eq!(total, 150, "{admitted:?}");

    let http = reqwest::Client::new();
    let mut per_category: BTreeMap<String, u64> = BTreeMap::new();
    for ((category, _), n) in &admitted {
        *per_category.entry(category.clone()).or_default() += n;
    }
    for c in 0..20 {
        for u in 0..10 {
            let (category, user) = (format!("c{c}"), format!("u{u}"));
            let peek: Value = http
                .post(format!("{}/v1/check", servers[(c + u) % 3].base))
                .json(&json!({"tree": "api", "descriptors": {"category": category, "user": user}, "cost": 0}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let used =
                |name: &str, limit: u64| limit - level(&peek, name)["remaining"].as_u64().unwrap();
            assert_eq!(used("global", 150), 150, "{peek}");
            let cat = per_category.get(&category).copied().unwrap_or(0);
            assert!(cat <= 10, "{category}: {cat}");
            assert_eq!(used("category", 10), cat, "{category}: {peek}");
            let mine = admitted
                .get(&(category.clone(), user.clone()))
                .copied()
                .unwrap_or(0);
            assert!(mine <= 2);
            assert_eq!(used("user", 2), mine, "{category}/{user}: {peek}");
        }
    }
    drop(servers);
}

/// Redis killed under gRPC calls: every call is answered within the store's
/// timeout plus a margin, with the code `on_error` gives (deny: OVER_LIMIT;
/// allow and local: OK), and none is an error status.
#[cfg(feature = "redis")]
#[rstest::rstest]
#[case::deny("deny", Code::OverLimit)]
#[case::allow("allow", Code::Ok)]
#[case::local("local", Code::Ok)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_answered_by_on_error_within_the_timeout(
    #[case] on_error: &str,
    #[case] expected: Code,
) {
    use std::time::{Duration, Instant};

    use crate::redis_support::RedisServer;

    let redis = RedisServer::start(&[]);
    let config = write_config(
        &format!("grpc-outage-{on_error}.toml"),
        &format!("[store]\ntimeout = \"100ms\"\non_error = \"{on_error}\"\n"),
    );
    let served = Served::start_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--redis",
            &redis.url(),
            "--http",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "warn,limitree_server::server=info")],
    );
    let mut client = client(&served).await;
    let call = |i: usize| {
        request(
            "notifications",
            vec![descriptor(&[("category", &format!("c{i}"))])],
        )
    };
    // Up and deciding in Redis first (the script loads on the first call).
    crate::support::poll::eventually(
        "a decision by Redis",
        crate::support::poll::SOON,
        async || {
            let r = client.clone().should_rate_limit(call(0)).await;
            matches!(r, Ok(r) if code(r.get_ref().overall_code) == Code::Ok)
        },
    )
    .await;
    drop(redis);
    for i in 1..=20 {
        let started = Instant::now();
        let r = client
            .should_rate_limit(call(i))
            .await
            .expect("answered, not an error");
        let took = started.elapsed();
        assert_eq!(code(r.get_ref().overall_code), expected, "call {i}");
        // 100 ms store timeout; the margin is for a loaded two-core machine.
        assert!(took < Duration::from_millis(600), "call {i} took {took:?}");
    }
}

/// `POST /json`, envoyproxy/ratelimit's HTTP bridge: the same decision as
/// gRPC, as proto3 JSON, 200 then 429; bad bodies are problem+json.
#[tokio::test]
async fn the_json_bridge_answers_like_grpc() {
    use serde_json::{Value, json};

    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let http = reqwest::Client::new();
    let body = json!({"domain": "notifications", "descriptors": [{"entries": [{"key": "category", "value": "errors"}]}]});
    for i in 0..10 {
        let r = http
            .post(format!("{}/json", served.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "call {i}");
        let reply: Value = r.json().await.unwrap();
        assert_eq!(reply["overallCode"], "OK");
        assert_eq!(reply["statuses"][0]["limitRemaining"], 9 - i);
    }
    let r = http
        .post(format!("{}/json", served.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["overallCode"], "OVER_LIMIT");
    assert_eq!(reply["statuses"][0]["code"], "OVER_LIMIT");
    assert_eq!(
        reply["statuses"][0]["currentLimit"]["name"],
        "category: 10 per 30m"
    );
    assert_eq!(reply["statuses"][0]["currentLimit"]["unit"], "UNKNOWN");
    assert!(
        reply["statuses"][0]["durationUntilReset"]
            .as_str()
            .unwrap()
            .ends_with('s')
    );

    // The same bucket over gRPC: the JSON calls were real decisions.
    let mut client = client(&served).await;
    let grpc = ask(
        &mut client,
        request("notifications", vec![descriptor(&[("category", "errors")])]),
    )
    .await;
    assert_eq!(code(grpc.overall_code), Code::OverLimit);

    for (bad, status) in [
        (
            json!({"domain": "notifications", "descriptors": [], "extra": 1}),
            422,
        ),
        (
            json!({"domain": "", "descriptors": [{"entries": [{"key": "a", "value": "b"}]}]}),
            400,
        ),
    ] {
        let r = http
            .post(format!("{}/json", served.base))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }

    // Counted by domain and code; the refused empty domain as an error.
    let metrics = http
        .get(format!("{}/metrics", served.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "limitree_rls_decisions_total{domain=\"notifications\",code=\"ok\"} 10",
        "limitree_rls_decisions_total{domain=\"notifications\",code=\"over_limit\"} 2",
        "limitree_rls_errors_total 1",
        "limitree_rls_unknown_domain_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// `limitree serve --config deploy/envoy/ratelimit/` (the shipped
/// envoyproxy/ratelimit config) answering the descriptors the shipped Envoy
/// config sends: `[generic_key=notify]` and `[category=…]` on every call.
#[tokio::test]
async fn the_shipped_envoy_config_decides_all_or_nothing() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/envoy/ratelimit");
    let served = Served::start(&["--http", "127.0.0.1:0", "--config", dir]);
    let mut client = client(&served).await;
    let call = |category: &str| {
        request(
            "notifications",
            vec![
                descriptor(&[("generic_key", "notify")]),
                descriptor(&[("category", category)]),
            ],
        )
    };
    for i in 0..10 {
        let r = ask(&mut client, call("errors")).await;
        assert_eq!(code(r.overall_code), Code::Ok, "call {i}");
        assert_eq!(r.statuses[0].limit_remaining, 99 - i);
        assert_eq!(r.statuses[1].limit_remaining, 9 - i);
        let limit = r.statuses[1].current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.name.as_str(), limit.requests_per_unit),
            ("category: 10 per 30m", 10)
        );
    }
    // Over the category's limit: denied, and the global rule is not charged.
    let denied = ask(&mut client, call("errors")).await;
    assert_eq!(code(denied.overall_code), Code::OverLimit);
    assert_eq!(code(denied.statuses[0].code), Code::Ok);
    assert_eq!(code(denied.statuses[1].code), Code::OverLimit);
    assert_eq!(denied.statuses[0].limit_remaining, 90);
    // A blocked category denies the call and charges nothing anywhere.
    let spam = ask(&mut client, call("spam")).await;
    assert_eq!(code(spam.overall_code), Code::OverLimit);
    assert_eq!(code(spam.statuses[1].code), Code::OverLimit);
    assert_eq!(
        spam.statuses[1]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        0
    );
    // An unlimited category: OK, only the global rule counts.
    let critical = ask(&mut client, call("critical")).await;
    assert_eq!(code(critical.overall_code), Code::Ok);
    assert_eq!(
        critical.statuses[0].limit_remaining, 89,
        "spam charged nothing"
    );
    assert_eq!(critical.statuses[1].limit_remaining, u32::MAX);
    // A descriptor no rule matches is OK without a limit.
    let other = ask(
        &mut client,
        request("notifications", vec![descriptor(&[("path", "/x")])]),
    )
    .await;
    assert_eq!(code(other.overall_code), Code::Ok);
    assert_eq!(other.statuses[0].current_limit, None);

    // config check prints what each rule became.
    let out = std::process::Command::new(crate::support::served::BIN)
        .args(["config", "check", dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = crate::support::served::text(&out.stdout);
    assert!(
        text.contains("domain notifications (envoyproxy/ratelimit"),
        "{text}"
    );
    assert!(
        text.contains("  category: 10 per 30m (30m, sliding_log)"),
        "{text}"
    );
    assert!(
        text.contains("  category=spam: 0 per second (always over limit)"),
        "{text}"
    );
}

/// A `RateLimitRequest` whose `domain` (field 1) and a descriptor entry's key
/// are bytes that are not UTF-8: what a typed client cannot send.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRequest {
    #[prost(bytes = "vec", tag = "1")]
    domain: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    descriptors: Vec<RawDescriptor>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawDescriptor {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<RawEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawEntry {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Invalid UTF-8 in a string field: the request cannot be decoded, which gRPC's
/// status-code table answers `INTERNAL` ("error parsing request proto"); the
/// message says why, nothing is charged, and the server keeps serving.
#[tokio::test]
async fn invalid_utf8_in_a_string_is_refused_and_charges_nothing() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let channel = channel(&served).await;
    for (domain, value) in [
        (b"notif\xffications".to_vec(), b"errors".to_vec()),
        (b"notifications".to_vec(), b"err\xc3\x28ors".to_vec()),
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let raw = RawRequest {
            domain,
            descriptors: vec![RawDescriptor {
                entries: vec![RawEntry {
                    key: b"category".to_vec(),
                    value,
                }],
            }],
        };
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        );
        let answer: Result<tonic::Response<RawRequest>, tonic::Status> = grpc
            .unary(
                tonic::Request::new(raw),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await;
        let status = answer.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        assert!(status.message().contains("UTF-8"), "{status:?}");
    }
    let mut client = client(&served).await;
    let after = ask(
        &mut client,
        request("notifications", vec![descriptor(&[("category", "errors")])]),
    )
    .await;
    assert_eq!(after.statuses[0].limit_remaining, 9, "nothing was charged");
}

/// The service reads requests into a 1 KiB buffer that grows: a call many
/// times that size (64 descriptors, each with a 250-byte entry, about 17 KiB)
/// is decided like a small one, and so is the next small one.
#[tokio::test]
async fn a_call_larger_than_the_codec_buffer_is_decided_like_any_other() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut client = client(&served).await;
    let note = "n".repeat(250);
    let big = request(
        "notifications",
        vec![descriptor(&[("category", "errors"), ("note", &note)]); 64],
    );
    let r = ask(&mut client, big).await;
    assert_eq!(code(r.overall_code), Code::Ok);
    assert_eq!(r.statuses.len(), 64);
    // The levels are reported (and charged) on the first descriptor, once.
    assert_eq!(r.statuses[0].limit_remaining, 9);
    let after = ask(
        &mut client,
        request("notifications", vec![descriptor(&[("category", "errors")])]),
    )
    .await;
    assert_eq!(after.statuses[0].limit_remaining, 8);
}

/// A method the service does not have is `UNIMPLEMENTED`, naming the one it has.
#[tokio::test]
async fn another_method_of_the_service_is_unimplemented() {
    let served = Served::start(&["--http", "127.0.0.1:0"]);
    let mut grpc = tonic::client::Grpc::new(channel(&served).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldNotRateLimit",
    );
    let answer: Result<tonic::Response<RawRequest>, tonic::Status> = grpc
        .unary(
            tonic::Request::new(RawRequest {
                domain: b"notifications".to_vec(),
                descriptors: Vec::new(),
            }),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let status = answer.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("ShouldRateLimit"), "{status:?}");
}
