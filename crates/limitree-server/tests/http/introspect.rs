//! The introspection API — `GET /v1/policy`, `GET /v1/buckets`,
//! `GET|DELETE /v1/buckets/{tree}/{level}/{bucket}` — on the memory store, a
//! standalone Redis and a Redis Cluster (started by the tests themselves).

use std::time::Instant;

use futures_util::future::try_join_all;
use limitree::CheckRequest;
use limitree_server::app::App;
use limitree_server::config::Config;
use rstest::rstest;
use serde_json::{Value, json};

use crate::support::server::{TestServer, level};

/// Where the buckets live in a test.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
    #[cfg(feature = "redis")]
    Cluster,
}

impl Backend {
    /// The `[store]` section (a fresh key prefix for Redis, a generous timeout
    /// for a loaded machine).
    pub fn store_toml(self) -> String {
        match self {
            Backend::Memory => String::new(),
            #[cfg(feature = "redis")]
            Backend::Redis => format!(
                "[store]\nurl = \"{}\"\nkey_prefix = \"{}\"\ntimeout = \"5s\"\n",
                crate::redis_support::standalone().url(),
                crate::redis_support::unique_prefix("introspect")
            ),
            #[cfg(feature = "redis")]
            Backend::Cluster => {
                let nodes: Vec<String> = crate::redis_support::cluster()
                    .urls()
                    .iter()
                    .map(|u| format!("\"{u}\""))
                    .collect();
                format!(
                    "[store]\ncluster = [{}]\nkey_prefix = \"{}\"\ntimeout = \"5s\"\n",
                    nodes.join(", "),
                    crate::redis_support::unique_prefix("introspect")
                )
            }
        }
    }
}

/// Tree `t`: a global level and a level by `user` (10 per hour), with
/// room for 60,000 users in the memory store.
pub const TREE: &str = r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 1000000
window = "1h"
algorithm = "sliding_window"
[[trees.levels]]
name = "user"
by = ["user"]
limit = 10
window = "1h"
algorithm = "sliding_window"
max_buckets = 60000
overrides = [{ when = { user = "vip" }, limit = 50 }]
"#;

/// A server on `backend` with [`TREE`], and its limiter (to fill buckets
/// fast, in process).
async fn served(backend: Backend) -> (TestServer, limitree::Limiter) {
    let text = format!("{}{TREE}", backend.store_toml());
    let config = Config::from_toml_str(&text, "introspect.toml").expect("valid test config");
    let state = App::build(
        &config,
        std::sync::Arc::new(limitree::SystemClock::new()),
        |_| None,
    )
    .expect("test app")
    .state;
    let limiter = state.limiter.clone();
    (TestServer::with_state(state, &config).await, limiter)
}

/// `n` checks of cost 1 for `user` over HTTP.
async fn take(server: &TestServer, user: &str, n: u64) {
    for _ in 0..n {
        let response = server
            .post_check(&json!({"tree": "t", "descriptors": {"user": user}}))
            .await;
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["reason"], "ok", "{reply}");
    }
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn names(list: &Value) -> Vec<String> {
    list["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap().to_owned())
        .collect()
}

#[rstest]
#[case::memory(Backend::Memory)]
#[cfg_attr(feature = "redis", case::redis(Backend::Redis))]
#[cfg_attr(feature = "redis", case::cluster(Backend::Cluster))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_listed_busiest_first_and_filtered_by_prefix(#[case] backend: Backend) {
    let (server, _) = served(backend).await;
    take(&server, "a", 5).await;
    take(&server, "b", 2).await;
    take(&server, "c", 7).await;
    take(&server, "ab", 1).await;
    // The override holds 50: 5 used of it is less busy than b's 2 of 10.
    take(&server, "vip", 5).await;

    let (status, list) = get(&server, "/v1/buckets?tree=t&level=user").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        names(&list),
        ["user=c", "user=a", "user=b", "user=vip", "user=ab"]
    );
    assert_eq!(list["truncated"], false);
    assert_eq!(list["scanned"], 5);
    assert_eq!(list["limit"], 20);
    let c = &list["buckets"][0];
    assert_eq!(
        (
            c["used"].as_u64(),
            c["remaining"].as_u64(),
            c["limit"].as_u64()
        ),
        (Some(7), Some(3), Some(10)),
        "{c}"
    );
    assert_eq!(c["values"], json!({"user": "c"}));
    assert_eq!(c["path"], "/v1/buckets/t/user/user=c");
    assert_eq!(list["buckets"][3]["limit"], 50);

    let (_, two) = get(&server, "/v1/buckets?tree=t&level=user&limit=2").await;
    assert_eq!(names(&two), ["user=c", "user=a"]);
    let (_, prefixed) = get(&server, "/v1/buckets?tree=t&level=user&prefix=a").await;
    assert_eq!(names(&prefixed), ["user=a", "user=ab"]);
    assert_eq!(prefixed["prefix"], "a");
    // The global level's one bucket holds everything taken.
    let (_, global) = get(&server, "/v1/buckets?tree=t&level=global").await;
    assert_eq!(names(&global), ["*"]);
    assert_eq!(global["buckets"][0]["used"], 20);
}

#[rstest]
#[case::memory(Backend::Memory)]
#[cfg_attr(feature = "redis", case::redis(Backend::Redis))]
#[cfg_attr(feature = "redis", case::cluster(Backend::Cluster))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bucket_reads_as_a_cost_zero_check_and_delete_resets_it(#[case] backend: Backend) {
    let (server, _) = served(backend).await;
    take(&server, "x,y", 4).await;
    // `,` in a value is percent-encoded in the path.
    let path = "/v1/buckets/t/user/user=x%2Cy";
    let (status, bucket) = get(&server, path).await;
    assert_eq!(status, 200, "{bucket}");
    let peek = server
        .post_check(&json!({"tree": "t", "descriptors": {"user": "x,y"}, "cost": 0}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let checked = level(&peek, "user");
    for field in [
        "bucket",
        "limit",
        "window_ms",
        "remaining",
        "allowed",
        "shadow",
    ] {
        assert_eq!(bucket[field], checked[field], "{field}: {bucket} vs {peek}");
    }
    let reset_gap =
        bucket["reset_after_ms"].as_i64().unwrap() - checked["reset_after_ms"].as_i64().unwrap();
    assert!(
        (0..=2000).contains(&reset_gap),
        "the check came later, by little: {bucket} vs {peek}"
    );
    assert_eq!(bucket["used"], 4);
    assert_eq!(bucket["path"], path);

    let response = server.client.delete(server.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let reset: Value = response.json().await.unwrap();
    assert_eq!(reset["removed"], true, "{reset}");
    assert_eq!(reset["before"]["used"], 4, "{reset}");
    // The next check sees the bucket full, and the global level untouched.
    let after = server
        .post_check(&json!({"tree": "t", "descriptors": {"user": "x,y"}, "cost": 0}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(level(&after, "user")["remaining"], 10, "{after}");
    assert_eq!(
        level(&after, "global")["remaining"],
        1_000_000 - 4,
        "{after}"
    );
    let again: Value = server
        .client
        .delete(server.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["removed"], false, "{again}");
    // The global level's bucket is `*`.
    let global: Value = server
        .client
        .delete(server.url("/v1/buckets/t/global/*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            global["removed"].as_bool(),
            global["before"]["used"].as_u64()
        ),
        (Some(true), Some(4)),
        "{global}"
    );
    let (_, global) = get(&server, "/v1/buckets/t/global/*").await;
    assert_eq!(global["remaining"], 1_000_000, "{global}");
}

/// 50,000 buckets in one level: a listing reads at most its scan budget, with at most
/// `limit` buckets, and says it was truncated (the scan budget is 10,000);
/// a prefix that matches few is answered in full, or honestly truncated.
#[rstest]
#[case::memory(Backend::Memory)]
#[cfg_attr(feature = "redis", case::redis(Backend::Redis))]
#[cfg_attr(feature = "redis", case::cluster(Backend::Cluster))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_buckets_are_listed_within_bounds(#[case] backend: Backend) {
    const USERS: usize = 50_000;
    let (server, limiter) = served(backend).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    // Decisions of one tree in flight together share a Redis script call.
    for round in users.chunks(500) {
        try_join_all(round.iter().map(|user| {
            let limiter = &limiter;
            async move {
                let descriptors = [("user", user.as_str())];
                limiter
                    .check(CheckRequest {
                        tree: Some("t"),
                        descriptors: &descriptors,
                        cost: 1,
                        dry_run: false,
                    })
                    .await
                    .map(|d| assert!(d.allowed, "{d:?}"))
            }
        }))
        .await
        .unwrap();
    }

    for (query, most) in [("", 20), ("&limit=1000", 1000)] {
        let response = server
            .client
            .get(server.url(&format!("/v1/buckets?tree=t&level=user{query}")))
            .send()
            .await
            .unwrap();
        let body = response.bytes().await.unwrap();
        // Bounded work, not a time: at most the scan budget read, a page of
        // bounded size answered (a wall-clock bound here failed on a loaded
        // machine without saying anything about the listing).
        let list: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            list["truncated"], true,
            "50,000 buckets, a budget of 10,000"
        );
        let scanned = list["scanned"].as_u64().unwrap();
        assert!((1..=10_000).contains(&scanned), "{scanned}");
        assert_eq!(names(&list).len(), most);
        assert!(
            body.len() < most * 400,
            "{} bytes for {most} buckets",
            body.len()
        );
        assert!(
            list["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["used"] == 1)
        );
    }

    let expected: Vec<String> = std::iter::once("u4999".to_owned())
        .chain((0..10).map(|i| format!("u4999{i}")))
        .map(|u| format!("user={u}"))
        .collect();
    let (_, prefixed) = get(&server, "/v1/buckets?tree=t&level=user&prefix=u4999").await;
    let mut found = names(&prefixed);
    found.sort();
    if prefixed["truncated"] == false {
        assert_eq!(found, expected, "untruncated: every match");
    } else {
        assert!(
            found.iter().all(|f| expected.contains(f)),
            "truncated, yet only matches: {found:?}"
        );
    }
}

#[rstest]
#[case::unknown_tree_in_query(
    "/v1/buckets?tree=nope&level=user",
    404,
    "unknown-tree",
    "defined trees: t"
)]
#[case::unknown_tree_in_path(
    "/v1/buckets/nope/user/user=a",
    404,
    "unknown-tree",
    "defined trees: t"
)]
#[case::unknown_level(
    "/v1/buckets?tree=t&level=nope",
    404,
    "unknown-level",
    "its levels: global, user"
)]
#[case::unknown_level_in_path(
    "/v1/buckets/t/nope/*",
    404,
    "unknown-level",
    "its levels: global, user"
)]
#[case::wrong_key(
    "/v1/buckets/t/user/team=a",
    400,
    "invalid-bucket",
    "not keyed by `team`"
)]
#[case::star_on_keyed("/v1/buckets/t/user/*", 400, "invalid-bucket", "keyed by user")]
#[case::keyed_on_global("/v1/buckets/t/global/user=a", 400, "invalid-bucket", "not keyed")]
#[case::level_missing("/v1/buckets?tree=t", 400, "invalid-query", "global, user")]
#[case::limit_zero(
    "/v1/buckets?tree=t&level=user&limit=0",
    400,
    "invalid-query",
    "from 1 to 1000"
)]
#[case::limit_too_large(
    "/v1/buckets?tree=t&level=user&limit=1001",
    400,
    "invalid-query",
    "from 1 to 1000"
)]
#[case::limit_not_a_number(
    "/v1/buckets?tree=t&level=user&limit=ten",
    400,
    "invalid-query",
    "`ten`"
)]
#[case::unknown_parameter("/v1/buckets?tree=t&level=user&sort=x", 400, "invalid-query", "`sort`")]
#[case::repeated_parameter(
    "/v1/buckets?tree=t&level=user&level=user",
    400,
    "invalid-query",
    "twice"
)]
#[case::empty_value("/v1/buckets/t/user/user=", 400, "invalid-bucket", "is empty")]
#[tokio::test]
async fn bad_names_are_problem_json(
    #[case] path: &str,
    #[case] status: u16,
    #[case] slug: &str,
    #[case] says: &str,
) {
    let (server, _) = served(Backend::Memory).await;
    let response = server.client.get(server.url(path)).send().await.unwrap();
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], format!("urn:limitree:problem:{slug}"));
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(says), "{detail}");
}

#[tokio::test]
async fn the_policy_is_served_as_resolved() {
    let (server, _) = served(Backend::Memory).await;
    let (status, policy) = get(&server, "/v1/policy").await;
    assert_eq!(status, 200);
    let tree = &policy["trees"][0];
    assert_eq!(
        (&tree["name"], &tree["kind"]),
        (&json!("t"), &json!("native"))
    );
    assert_eq!(
        tree["levels"][1],
        json!({
            "name": "user", "by": ["user"], "algorithm": "sliding_window",
            "limit": 10, "window": "1h", "window_ms": 3_600_000,
            "shadow": false, "required": true, "max_buckets": 60000,
            "overrides": [{"when": {"user": "vip"}, "algorithm": "sliding_window",
                           "limit": 50, "window": "1h", "window_ms": 3_600_000}]
        })
    );
    assert_eq!(tree["levels"][0]["max_buckets"], Value::Null);
    assert_eq!(tree["domain"], Value::Null);
}

#[tokio::test]
async fn an_envoy_domain_shows_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "domain: d\ndescriptors:\n  - key: ip\n    rate_limit:\n      unit: minute\n      requests_per_unit: 5\n",
    )
    .unwrap();
    let config = Config::load(dir.path()).expect("valid YAML config");
    let server = TestServer::with_config(config).await;
    let (_, policy) = get(&server, "/v1/policy").await;
    let tree = &policy["trees"][0];
    assert_eq!(tree["kind"], "envoy", "{policy}");
    assert_eq!(tree["levels"][0]["limit"], 5);
    assert_eq!(tree["levels"][0]["window"], "1m");
    let rules = tree["domain"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{policy}");
    assert!(rules[0].as_str().unwrap().contains("ip"), "{policy}");
}

/// A denial answered over `POST /json` (Envoy's HTTP bridge, the gRPC
/// service's own code path) reaches the status page's ring and counters.
#[tokio::test]
async fn rate_limit_service_denials_are_recorded_for_the_status_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "domain: d\ndescriptors:\n  - key: ip\n    rate_limit:\n      unit: minute\n      requests_per_unit: 1\n",
    )
    .unwrap();
    let server = TestServer::with_config(Config::load(dir.path()).unwrap()).await;
    let call =
        json!({"domain": "d", "descriptors": [{"entries": [{"key": "ip", "value": "10.0.0.1"}]}]});
    let codes: Vec<u16> = futures_util::future::join_all((0..2).map(|_| async {
        server
            .client
            .post(server.url("/json"))
            .json(&call)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }))
    .await;
    let mut codes = codes;
    codes.sort_unstable();
    assert_eq!(codes, [200, 429]);
    let (_, status) = get(&server, "/v1/status").await;
    let denial = &status["denials"][0];
    assert_eq!(denial["source"], "rls", "{status}");
    assert_eq!(denial["tree"], "d");
    assert_eq!(denial["reason"], "limited");
    let level = &status["trees"][0]["levels"][0];
    assert_eq!(level["denied"], 1, "{status}");
    assert_eq!(denial["levels"][0]["level"], level["name"]);
    assert_eq!(level["buckets"][0]["used"], 1, "{status}");
}

/// Through `limitree serve` on each store: `GET /v1/buckets` and the
/// one-bucket `GET` say how long ago each bucket last admitted a charge, by
/// the store's clock (within the wall time the test saw pass); a dry run,
/// a peek and a denial leave it be; a bucket that admitted nothing says
/// `null`; the next admission brings it back to about 0.
#[rstest]
#[case::memory(Backend::Memory)]
#[cfg_attr(feature = "redis", case::redis(Backend::Redis))]
#[cfg_attr(feature = "redis", case::cluster(Backend::Cluster))]
#[tokio::test]
async fn buckets_report_their_last_admission(#[case] backend: Backend) {
    use crate::support::poll::{SOON, eventually};
    use crate::support::served::{Served, write_config};
    let config = write_config(
        "introspect-last-admission.toml",
        &format!(
            "{}[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"global\"\nlimit = 100\nwindow = \"1h\"\n[[trees.levels]]\nname = \"user\"\nby = [\"user\"]\nlimit = 3\nwindow = \"1h\"\n",
            backend.store_toml()
        ),
    );
    let served = Served::start(&[
        "--config",
        config.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "off",
    ]);
    let http = reqwest::Client::new();
    let check = async |cost: u64, dry_run: bool| -> Value {
        let body =
            json!({"tree": "t", "descriptors": {"user": "a"}, "cost": cost, "dry_run": dry_run});
        let reply = http
            .post(format!("{}/v1/check", served.base))
            .json(&body)
            .send();
        reply.await.unwrap().json().await.unwrap()
    };
    let get = async |path: &str| -> Value {
        let response = http
            .get(format!("{}{path}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    };
    let ago = |bucket: &Value| bucket["last_admission_ms_ago"].as_u64();

    let before = Instant::now();
    assert_eq!(check(2, false).await["reason"], "ok");
    let list = get("/v1/buckets?tree=t&level=user").await;
    let bucket = &list["buckets"][0];
    assert_eq!(
        (&bucket["bucket"], &bucket["used"]),
        (&json!("user=a"), &json!(2)),
        "{list}"
    );
    let seen = ago(bucket).expect("the store reports it");
    assert!(
        u128::from(seen) <= before.elapsed().as_millis(),
        "{seen} ms ago: {list}"
    );
    let global = get("/v1/buckets/t/global/*").await;
    assert!(ago(&global).is_some(), "{global}");
    let fresh = get("/v1/buckets/t/user/user=b").await;
    assert_eq!(fresh["last_admission_ms_ago"], Value::Null, "{fresh}");

    // Let the server's clock pass 100 ms (polled, not slept), then a dry
    // run, a peek and a denial: none of them is an admission.
    eventually("the admission to be 100 ms old", SOON, async || {
        ago(&get("/v1/buckets/t/user/user=a").await).is_some_and(|ms| ms >= 100)
    })
    .await;
    assert_eq!(check(1, true).await["allowed"], true);
    assert_eq!(check(0, false).await["allowed"], true);
    assert_eq!(check(2, false).await["reason"], "limited");
    let a = get("/v1/buckets/t/user/user=a").await;
    assert!(ago(&a).is_some_and(|ms| ms >= 100), "{a}");
    assert!(ago(&get("/v1/buckets/t/global/*").await).is_some_and(|ms| ms >= 100));

    // An admission moves it, on every level it charged.
    let admitted = Instant::now();
    assert_eq!(check(1, false).await["reason"], "ok");
    for path in ["/v1/buckets/t/user/user=a", "/v1/buckets/t/global/*"] {
        let bucket = get(path).await;
        let seen = ago(&bucket).unwrap();
        assert!(
            u128::from(seen) <= admitted.elapsed().as_millis(),
            "{seen} ms ago: {bucket}"
        );
    }
}
