//! `GET /metrics` after real traffic through `limitree serve` (a child
//! process): HTTP checks, a notification delivered to a mock Slack under a
//! route whose name holds `"`, `\` and a newline, gRPC and `POST /json` calls.
//! The exposition is read back by the Prometheus project's own parser
//! (`support::exposition`), and every count is compared with what the
//! replies said.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::exposition::Exposition;
use crate::support::poll::{SOON, eventually};
use crate::support::rls::{ask, client, code, descriptor, request};
use crate::support::served::{Served, write_config};
use crate::support::slack::{Recorder, hook_url, mock_slack, slack_ok};

/// A category (and so a route, and a webhook label) no label writer should
/// pass through unescaped.
const HOSTILE: &str = "we\"ird\\cat\nx";

/// The config: tree `t` (global 6, category 2 with room for 3 buckets) with
/// notifications routed per category; tree `g` (one `detailed` level, 1 per
/// category) for the gRPC calls.
fn config(hook: &str) -> String {
    format!(
        r#"
[server]
near_limit_ratio = 0.5

[notify]
tree = "t"
default_webhook = ""
pace = "1ms"
burst = 100
fsync = false

[notify.routes]
{hostile} = "{hook}"

[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 6
window = "30m"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 2
window = "30m"
max_buckets = 3

[[trees]]
name = "g"
[[trees.levels]]
name = "per_category"
by = ["category"]
limit = 1
window = "30m"
detailed = true
"#,
        hostile = toml_string(HOSTILE),
    )
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a TOML basic string here")
}

/// What the replies said, tallied as the metrics should count it.
#[derive(Debug, Default)]
struct Tally {
    /// (level, outcome) → count, commits only.
    levels: BTreeMap<(String, &'static str), u64>,
    /// level → admitted commits that left it at least half full.
    near: BTreeMap<String, u64>,
    /// level → replies (any mode) that landed in the overflow bucket.
    overflow: BTreeMap<String, u64>,
    /// reason → committed decisions.
    reasons: BTreeMap<String, u64>,
    /// Every store decision (commits, peeks, dry runs).
    store_calls: u64,
}

impl Tally {
    /// Counts a check or notify reply (`levels` as `POST /v1/check` writes them).
    fn reply(&mut self, reply: &Value, commit: bool) {
        self.store_calls += 1;
        let allowed = reply["allowed"].as_bool().unwrap();
        for level in reply["levels"].as_array().unwrap() {
            let name = level["name"].as_str().unwrap().to_owned();
            if level["bucket"].as_str().unwrap().ends_with("=<overflow>") {
                *self.overflow.entry(name.clone()).or_default() += 1;
            }
            if !commit {
                continue;
            }
            let outcome = if level["allowed"].as_bool().unwrap() {
                "allowed"
            } else {
                "denied"
            };
            *self.levels.entry((name.clone(), outcome)).or_default() += 1;
            let (limit, remaining) = (
                level["limit"].as_u64().unwrap(),
                level["remaining"].as_u64().unwrap(),
            );
            if allowed && (limit - remaining) * 2 >= limit {
                *self.near.entry(name).or_default() += 1;
            }
        }
        if commit {
            let reason = reply["reason"].as_str().unwrap().to_owned();
            *self.reasons.entry(reason).or_default() += 1;
        }
    }
}

/// Everything the traffic was, and the exposition after it.
struct Traffic {
    metrics: Exposition,
    tally: Tally,
    /// Requests per route template, and answers per (route, status).
    requests: BTreeMap<&'static str, u64>,
    responses: BTreeMap<(&'static str, u16), u64>,
    _served: Served,
}

/// Runs the traffic against a fresh server and scrapes it once the
/// notification has been delivered.
async fn traffic() -> Traffic {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let path = write_config(
        &format!("metrics-{}.toml", rand_suffix()),
        &config(&hook_url(&mock)),
    );
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let http = reqwest::Client::new();
    let base = served.base.clone();
    let mut tally = Tally::default();
    let mut requests: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut responses: BTreeMap<(&'static str, u16), u64> = BTreeMap::new();
    let mut answered = |route: &'static str, status: u16| {
        *requests.entry(route).or_default() += 1;
        *responses.entry((route, status)).or_default() += 1;
    };

    // One notification under the hostile route: accepted, then delivered.
    let reply = http
        .post(format!("{base}/v1/notify"))
        .json(&json!({"category": HOSTILE, "text": "disk full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    answered("/v1/notify", 202);
    tally.reply(&reply.json().await.unwrap(), true);

    // Checks: some denied by `category`, later categories in the overflow
    // bucket, then `global` runs out.
    for category in ["a", "a", "a", "b", "c", "d", "d", "e", "b", "f", "g"] {
        let body = json!({"tree": "t", "descriptors": {"category": category}});
        let reply = post_check(&http, &base, &body).await;
        answered("/v1/check", 200);
        tally.reply(&reply, true);
    }
    // Peeks and dry runs: answered, not counted as decisions.
    for (cost, dry_run) in [(0, false), (0, false), (1, true), (1, true), (1, true)] {
        let body = json!({"tree": "t", "descriptors": {"category": "a"}, "cost": cost, "dry_run": dry_run});
        let reply = post_check(&http, &base, &body).await;
        answered("/v1/check", 200);
        tally.reply(&reply, false);
    }
    // Errors: a bad body, a wrong method, an unknown path.
    let bad = http
        .post(format!("{base}/v1/check"))
        .json(&json!({"descriptors": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    answered("/v1/check", 422);
    let wrong = http.get(format!("{base}/v1/check")).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    answered("/v1/check", 405);
    let unknown = http.get(format!("{base}/no/such")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    answered("unmatched", 404);

    // gRPC on tree `g`: the first call takes the bucket, the second is denied.
    let mut grpc = client(&served).await;
    for expected in ["ok", "over_limit"] {
        let answer = ask(
            &mut grpc,
            request("g", vec![descriptor(&[("category", "x")])]),
        )
        .await;
        let outcome = if expected == "ok" {
            "allowed"
        } else {
            "denied"
        };
        assert_eq!(
            code(answer.overall_code).as_str_name(),
            expected.to_uppercase()
        );
        *tally
            .levels
            .entry(("per_category".to_owned(), outcome))
            .or_default() += 1;
        *tally
            .reasons
            .entry(if expected == "ok" { "ok" } else { "limited" }.to_owned())
            .or_default() += 1;
        tally.store_calls += 1;
    }
    // POST /json on `g`, another category: allowed.
    let json_reply = http
        .post(format!("{base}/json"))
        .json(&json!({"domain": "g", "descriptors": [{"entries": [{"key": "category", "value": "y"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_reply.status(), 200);
    answered("/json", 200);
    *tally
        .levels
        .entry(("per_category".to_owned(), "allowed"))
        .or_default() += 1;
    *tally.reasons.entry("ok".to_owned()).or_default() += 1;
    tally.store_calls += 1;

    let webhook = format!("routes.{HOSTILE}");
    let metrics = eventually("the notification's delivery to show", SOON, async || {
        let metrics = Exposition::scrape(&http, &base).await;
        let delivered = metrics.get(
            "limitree_notify_deliveries_total",
            &[("webhook", &webhook), ("outcome", "delivered")],
        );
        (delivered == Some(1.0)).then_some(metrics)
    })
    .await;
    assert_eq!(recorder.len(), 1);
    Traffic {
        metrics,
        tally,
        requests,
        responses,
        _served: served,
    }
}

async fn post_check(http: &reqwest::Client, base: &str, body: &Value) -> Value {
    let reply = http
        .post(format!("{base}/v1/check"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

/// Config file names unique within this test binary's run.
fn rand_suffix() -> u64 {
    rand::random()
}

/// Every count equals what the replies said; the hostile webhook label comes
/// back through the parser unchanged.
#[tokio::test]
async fn metrics_after_traffic_match_the_replies() {
    let Traffic {
        metrics,
        tally,
        requests,
        responses,
        ..
    } = traffic().await;

    // Per level: which level denied, as the replies said (gRPC and /json included).
    for level in ["global", "category", "per_category"] {
        let tree = if level == "per_category" { "g" } else { "t" };
        for outcome in ["allowed", "denied", "shadow_denied"] {
            let expected = tally
                .levels
                .get(&(level.to_owned(), outcome))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                metrics.value(
                    "limitree_level_decisions_total",
                    &[("tree", tree), ("level", level), ("outcome", outcome)]
                ),
                expected as f64,
                "{tree}/{level} {outcome}"
            );
        }
    }
    assert!(
        tally.levels[&("category".to_owned(), "denied")] >= 1
            && tally.levels[&("global".to_owned(), "denied")] >= 1,
        "the traffic had denials at both levels: {tally:?}"
    );
    // Near-limit and overflow, per level.
    for level in ["global", "category"] {
        for (name, expected) in [
            ("limitree_level_near_limit_total", &tally.near),
            ("limitree_level_overflow_total", &tally.overflow),
        ] {
            assert_eq!(
                metrics.value(name, &[("tree", "t"), ("level", level)]),
                expected.get(level).copied().unwrap_or(0) as f64,
                "{name} {level}"
            );
        }
    }
    assert!(tally.overflow["category"] >= 1, "{tally:?}");
    assert!(tally.near["category"] >= 1, "{tally:?}");

    // Decisions by reason, over both trees: commits only.
    for reason in ["ok", "limited", "insufficient_capacity", "shadow"] {
        let counted: f64 = ["t", "g"]
            .iter()
            .map(|tree| {
                metrics.value(
                    "limitree_decisions_total",
                    &[("tree", tree), ("reason", reason)],
                )
            })
            .sum();
        assert_eq!(
            counted,
            tally.reasons.get(reason).copied().unwrap_or(0) as f64,
            "{reason}"
        );
    }
    // Peeks and dry runs apart: 2 and 3, none of them in the decisions above.
    assert_eq!(metrics.value("limitree_peeks_total", &[("tree", "t")]), 2.0);
    let dry: f64 = metrics
        .all("limitree_dry_runs_total")
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(dry, 3.0);
    // POST /v1/check alone: its 11 commits, not the 5 peeks and dry runs.
    let checks: f64 = metrics
        .all("limitree_check_decisions_total")
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(checks, 11.0);

    // gRPC and /json: the rate limit service's own counters.
    assert_eq!(
        metrics.value(
            "limitree_rls_decisions_total",
            &[("domain", "g"), ("code", "ok")]
        ),
        2.0
    );
    assert_eq!(
        metrics.value(
            "limitree_rls_decisions_total",
            &[("domain", "g"), ("code", "over_limit")]
        ),
        1.0
    );

    // Histograms count every request made.
    assert_eq!(
        metrics.value(
            "limitree_store_duration_seconds_count",
            &[("store", "memory")]
        ),
        tally.store_calls as f64
    );
    assert_eq!(
        metrics.value(
            "limitree_grpc_request_duration_seconds_count",
            &[("method", "ShouldRateLimit")]
        ),
        2.0
    );
    for (route, count) in &requests {
        assert_eq!(
            metrics.value(
                "limitree_http_request_duration_seconds_count",
                &[("route", route)]
            ),
            *count as f64,
            "{route}"
        );
        assert_eq!(
            metrics.value(
                "limitree_http_request_duration_seconds_bucket",
                &[("route", route), ("le", "+Inf")]
            ),
            *count as f64,
            "{route}"
        );
    }
    // Responses by route template and status.
    for ((route, status), count) in &responses {
        assert_eq!(
            metrics.value(
                "limitree_http_responses_total",
                &[("route", route), ("status", &status.to_string())]
            ),
            *count as f64,
            "{route} {status}"
        );
    }
    assert!(
        metrics
            .all("limitree_http_responses_total")
            .iter()
            .all(|s| s.labels["route"] != "/no/such"),
        "paths are never labels"
    );

    // The relay, under the hostile webhook label (unescaped by the parser).
    let webhook = format!("routes.{HOSTILE}");
    assert_eq!(
        metrics.value("limitree_notify_requests_total", &[("outcome", "accepted")]),
        1.0
    );
    assert_eq!(
        metrics.value(
            "limitree_notify_delivery_latency_seconds_count",
            &[("webhook", &webhook)]
        ),
        1.0
    );
    assert_eq!(
        metrics.value("limitree_notify_retries_total", &[("webhook", &webhook)]),
        0.0
    );
    assert_eq!(
        metrics.value("limitree_notify_queue_depth", &[("webhook", &webhook)]),
        0.0
    );
    // Each family has the type its name promises.
    for (family, kind) in [
        ("limitree_decisions", "counter"),
        ("limitree_level_decisions", "counter"),
        ("limitree_store_duration_seconds", "histogram"),
        ("limitree_http_request_duration_seconds", "histogram"),
        ("limitree_notify_delivery_latency_seconds", "histogram"),
        ("limitree_notify_queue_depth", "gauge"),
        ("limitree_http_connections", "gauge"),
    ] {
        let kinds: std::collections::BTreeSet<&str> = metrics
            .samples
            .iter()
            .filter(|s| s.family == family)
            .map(|s| s.kind.as_str())
            .collect();
        assert_eq!(kinds, [kind].into(), "{family}");
    }
    // No store errors on the memory store; the build's version.
    for s in metrics.all("limitree_store_errors_total") {
        assert_eq!(s.value, 0.0, "{s:?}");
    }
    assert_eq!(
        metrics.value(
            "limitree_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

/// A `detailed` level gets a series per descriptor value, at most
/// `detailed_max_values` of them; the rest share `__other__`.
#[tokio::test]
async fn a_detailed_level_counts_values_up_to_its_cap() {
    let path = write_config(
        &format!("metrics-detailed-{}.toml", rand_suffix()),
        r#"
[server]
detailed_max_values = 2

[[trees]]
name = "t"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 1
window = "30m"
detailed = true
"#,
    );
    let served = Served::start(&[
        "--config",
        path.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "off",
    ]);
    let http = reqwest::Client::new();
    // a: allowed then denied; b allowed; c and d past the cap; a peek of e.
    for (category, cost) in [("a", 1), ("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 0)] {
        post_check(
            &http,
            &served.base,
            &json!({"descriptors": {"category": category}, "cost": cost}),
        )
        .await;
    }
    let metrics = Exposition::scrape(&http, &served.base).await;
    let value = |value: &str, outcome: &str| {
        metrics
            .get(
                "limitree_level_value_decisions_total",
                &[
                    ("level", "category"),
                    ("value", value),
                    ("outcome", outcome),
                ],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(value("a", "allowed"), 1.0);
    assert_eq!(value("a", "denied"), 1.0);
    assert_eq!(value("b", "allowed"), 1.0);
    assert_eq!(value("__other__", "allowed"), 2.0, "c and d");
    let values: std::collections::BTreeSet<&str> = metrics
        .all("limitree_level_value_decisions_total")
        .iter()
        .map(|s| s.labels["value"].as_str())
        .collect();
    assert_eq!(
        values,
        ["__other__", "a", "b"].into(),
        "two values and the rest"
    );
}

/// `deploy/grafana/limitree.json` is valid JSON; it has panels for the gRPC
/// connection and policy reload families; and every metric its panels query
/// is in the README's metrics table and in the exposition after traffic.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_exposed_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/limitree.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    let mut queried = std::collections::BTreeSet::new();
    collect_metric_names(&dashboard, &mut queried);
    assert!(queried.len() >= 10, "the panels query {queried:?}");
    for family in [
        "limitree_grpc_connections",
        "limitree_grpc_connections_accepted_total",
        "limitree_grpc_connections_refused_total",
        "limitree_grpc_connections_closed_total",
        "limitree_grpc_accept_errors_total",
        "limitree_grpc_request_duration_seconds_bucket",
        "limitree_policy_reloads_total",
        "limitree_policy_stale",
        "limitree_policy_info",
    ] {
        assert!(queried.contains(family), "no panel queries {family}");
    }

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let documented: std::collections::BTreeSet<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `limitree_"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    let undocumented: Vec<&String> = queried
        .iter()
        .filter(|name| {
            let name = name.strip_prefix("limitree_").unwrap_or(name);
            // A histogram's series are documented by its family's name.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| documented.contains(family))
                .unwrap_or(name);
            !documented.contains(family)
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "queried but not in the README's metrics table: {undocumented:?}"
    );

    let Traffic { metrics, .. } = traffic().await;
    let exposed: std::collections::BTreeSet<&str> =
        metrics.samples.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exposed: {missing:?}\n{}",
        metrics.text
    );
}

/// Every `limitree_…` name in the `expr` of every target in `value`.
fn collect_metric_names(value: &Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "expr"
                    && let Some(expr) = v.as_str()
                {
                    names.extend(metric_names(expr));
                }
                collect_metric_names(v, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_metric_names(v, names)),
        _ => {}
    }
}

/// The `limitree_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("limitree_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// With Redis unreachable, each failed store call is counted by its kind,
/// and the decisions `on_error` made are counted as `store_unavailable`.
#[cfg(feature = "redis")]
#[tokio::test]
async fn store_errors_are_counted_by_kind() {
    let path = write_config(
        &format!("metrics-down-{}.toml", rand_suffix()),
        "[store]\ntimeout = \"100ms\"\non_error = \"allow\"\n",
    );
    let redis = format!("redis://127.0.0.1:{}", crate::support::free_port());
    let served = Served::start_with_env(
        &[
            "--config",
            path.to_str().unwrap(),
            "--redis",
            &redis,
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "off",
        ],
        &[("RUST_LOG", "warn,limitree_server::server=info")],
    );
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let reply = post_check(
            &http,
            &served.base,
            &json!({"descriptors": {"category": "errors"}}),
        )
        .await;
        assert_eq!(reply["reason"], "store_unavailable");
    }
    let metrics = Exposition::scrape(&http, &served.base).await;
    let errors: f64 = metrics
        .all("limitree_store_errors_total")
        .iter()
        .filter(|s| s.labels["store"] == "redis")
        .map(|s| s.value)
        .sum();
    assert_eq!(errors, 3.0, "one per failed call");
    assert_eq!(
        metrics.value(
            "limitree_store_duration_seconds_count",
            &[("store", "redis")]
        ),
        3.0
    );
    assert_eq!(
        metrics.value(
            "limitree_decisions_total",
            &[("tree", "notifications"), ("reason", "store_unavailable")]
        ),
        3.0
    );
    assert_eq!(
        metrics.value(
            "limitree_store_errors_total",
            &[("store", "redis"), ("error", "protocol")]
        ),
        0.0
    );
}

/// One tree `a` (a global level), and with `more` a `category` level under
/// it and a second tree `b`.
fn reload_config(more: bool) -> String {
    let mut text = String::from(
        "[[trees]]\nname = \"a\"\n[[trees.levels]]\nname = \"global\"\nlimit = 100\nwindow = \"30m\"\n",
    );
    if more {
        text.push_str(concat!(
            "[[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n",
            "[[trees]]\nname = \"b\"\n[[trees.levels]]\nname = \"per_user\"\nby = [\"user\"]\nlimit = 5\nwindow = \"30m\"\n",
        ));
    }
    text
}

/// A reload that adds a level and a tree: their series show (at 0) from the
/// first scrape after it, the counters of what stayed go on, the decisions of
/// the reloaded store are still timed and counted (the wrappers wrap the
/// store the reload installs), and the reload families say what happened.
#[tokio::test]
async fn a_reload_adds_series_and_keeps_counting() {
    let path = write_config(
        &format!("metrics-reload-{}.toml", rand_suffix()),
        &reload_config(false),
    );
    let served = Served::start(&[
        "--config",
        path.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
    ]);
    let http = reqwest::Client::new();
    let body = json!({"tree": "a", "descriptors": {"category": "x"}});
    for _ in 0..2 {
        assert_eq!(
            post_check(&http, &served.base, &body).await["allowed"],
            true
        );
    }
    let before = Exposition::scrape(&http, &served.base).await;
    assert_eq!(
        before.get(
            "limitree_decisions_total",
            &[("tree", "b"), ("reason", "ok")]
        ),
        None
    );
    assert_eq!(before.value("limitree_policy_stale", &[]), 0.0);
    assert_eq!(before.value("limitree_grpc_connections", &[]), 0.0);

    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, reload_config(true)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let reply: Value = http
        .post(format!("{}/v1/reload", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    let hash = reply["policy_hash"].as_str().unwrap().to_owned();

    let after = Exposition::scrape(&http, &served.base).await;
    // The file watcher may have reloaded first; the POST then counts as an
    // ok reload that changed nothing.
    assert!(after.value("limitree_policy_reloads_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(
        after.value("limitree_policy_reloads_total", &[("result", "error")]),
        0.0
    );
    assert_eq!(after.value("limitree_policy_info", &[("hash", &hash)]), 1.0);
    assert_eq!(
        after.all("limitree_policy_info").len(),
        1,
        "one policy in force"
    );
    for (name, labels) in [
        (
            "limitree_decisions_total",
            vec![("tree", "b"), ("reason", "ok")],
        ),
        (
            "limitree_check_decisions_total",
            vec![("tree", "b"), ("reason", "ok")],
        ),
        (
            "limitree_rls_decisions_total",
            vec![("domain", "b"), ("code", "ok")],
        ),
        (
            "limitree_level_decisions_total",
            vec![("tree", "a"), ("level", "category"), ("outcome", "allowed")],
        ),
        (
            "limitree_level_decisions_total",
            vec![("tree", "b"), ("level", "per_user"), ("outcome", "allowed")],
        ),
    ] {
        assert_eq!(after.get(name, &labels), Some(0.0), "{name} {labels:?}");
    }
    assert_eq!(
        after.value(
            "limitree_decisions_total",
            &[("tree", "a"), ("reason", "ok")]
        ),
        2.0
    );

    assert_eq!(
        post_check(&http, &served.base, &body).await["allowed"],
        true
    );
    let b = json!({"tree": "b", "descriptors": {"user": "u"}});
    assert_eq!(post_check(&http, &served.base, &b).await["allowed"], true);
    let last = Exposition::scrape(&http, &served.base).await;
    for (name, labels, expected) in [
        (
            "limitree_decisions_total",
            vec![("tree", "a"), ("reason", "ok")],
            3.0,
        ),
        (
            "limitree_decisions_total",
            vec![("tree", "b"), ("reason", "ok")],
            1.0,
        ),
        (
            "limitree_check_decisions_total",
            vec![("tree", "a"), ("reason", "ok")],
            3.0,
        ),
        (
            "limitree_check_decisions_total",
            vec![("tree", "b"), ("reason", "ok")],
            1.0,
        ),
        (
            "limitree_level_decisions_total",
            vec![("tree", "a"), ("level", "global"), ("outcome", "allowed")],
            3.0,
        ),
        (
            "limitree_level_decisions_total",
            vec![("tree", "a"), ("level", "category"), ("outcome", "allowed")],
            1.0,
        ),
        (
            "limitree_level_decisions_total",
            vec![("tree", "b"), ("level", "per_user"), ("outcome", "allowed")],
            1.0,
        ),
        (
            "limitree_store_duration_seconds_count",
            vec![("store", "memory")],
            4.0,
        ),
    ] {
        assert_eq!(last.value(name, &labels), expected, "{name} {labels:?}");
    }
}
