//! `POST /v1/check`: exact decisions, the reply's shape and its headers.

use serde_json::json;

use crate::support::server::{TestServer, level};

#[tokio::test]
async fn the_eleventh_check_in_a_category_is_denied_and_charges_nothing() {
    let server = TestServer::start().await;
    for i in 1..=10 {
        let reply = server.check("errors", 1).await;
        assert_eq!(reply["allowed"], true, "check {i}: {reply}");
        assert_eq!(reply["reason"], "ok");
        assert_eq!(level(&reply, "category")["remaining"], 10 - i);
    }
    let denied = server.check("errors", 1).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["reason"], "limited");
    let retry = denied["retry_after_ms"].as_u64().unwrap();
    assert!((1_799_000..=1_800_000).contains(&retry), "retry {retry}");
    let category = level(&denied, "category");
    assert_eq!(category["allowed"], false);
    assert!(category["retry_after_ms"].as_u64().unwrap() >= 1_799_000);
    assert_eq!(level(&denied, "global")["allowed"], true);

    // A peek (cost 0) consumes nothing and shows the denial charged nothing.
    let peek = server.check("errors", 0).await;
    assert_eq!(level(&peek, "global")["remaining"], 90, "{peek}");
    assert_eq!(level(&peek, "category")["remaining"], 0);

    // Another category still has its own room, under the same global level.
    let other = server.check("deploys", 1).await;
    assert_eq!(other["allowed"], true);
    assert_eq!(level(&other, "global")["remaining"], 89);
    assert_eq!(level(&other, "category")["remaining"], 9);
}

#[tokio::test]
async fn reply_has_every_field_in_milliseconds() {
    let server = TestServer::start().await;
    let reply = server.check("errors", 1).await;
    assert_eq!(reply["tree"], "notifications");
    assert_eq!(reply["retry_after_ms"], serde_json::Value::Null);
    let category = level(&reply, "category");
    assert_eq!(category["bucket"], "category=errors");
    assert_eq!(category["limit"], 10);
    assert_eq!(category["window_ms"], 1_800_000);
    assert_eq!(category["shadow"], false);
    assert!(category["reset_after_ms"].as_u64().unwrap() <= 1_800_000);
    assert_eq!(level(&reply, "global")["bucket"], "*");
}

#[tokio::test]
async fn ratelimit_headers_name_the_tightest_level() {
    let server = TestServer::start().await;
    let body = json!({"descriptors": {"category": "errors"}});
    let response = server.post_check(&body).await;
    let headers = response.headers();
    assert_eq!(
        headers["ratelimit-policy"],
        "\"global\";q=100;w=1800, \"category\";q=10;w=1800"
    );
    assert_eq!(headers["ratelimit"], "\"category\";r=9;t=1800");
    assert!(headers.get("retry-after").is_none());

    for _ in 0..9 {
        server.post_check(&body).await;
    }
    let denied = server.post_check(&body).await;
    assert_eq!(denied.status(), 200, "a denial is still an answer");
    assert_eq!(denied.headers()["ratelimit"], "\"category\";r=0;t=1800");
    let retry: u64 = denied.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1799..=1800).contains(&retry), "{retry}");
}

#[tokio::test]
async fn dry_run_answers_without_recording() {
    let server = TestServer::start().await;
    let body = json!({"descriptors": {"category": "errors"}, "cost": 10, "dry_run": true});
    for _ in 0..3 {
        let reply: serde_json::Value = server.post_check(&body).await.json().await.unwrap();
        assert_eq!(reply["allowed"], true, "{reply}");
    }
    let peek = server.check("errors", 0).await;
    assert_eq!(level(&peek, "category")["remaining"], 10);
}

#[tokio::test]
async fn a_cost_no_level_can_hold_is_insufficient_capacity() {
    let server = TestServer::start().await;
    let response = server
        .post_check(&json!({"descriptors": {"category": "errors"}, "cost": 11}))
        .await;
    assert!(response.headers().get("retry-after").is_none());
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["allowed"], false);
    assert_eq!(reply["reason"], "insufficient_capacity");
    assert_eq!(reply["retry_after_ms"], serde_json::Value::Null);
}

const TWO_TREES: &str = r#"
[[trees]]
name = "api"
[[trees.levels]]
name = "per_user"
by = ["user"]
limit = 2
window = "1m"
algorithm = "gcra"
burst = 2
[[trees.levels]]
name = "audit"
limit = 1
window = "1h"
algorithm = "fixed_window"
shadow = true

[[trees]]
name = "mail"
[[trees.levels]]
name = "global"
limit = 5
window = "1s"
algorithm = "sliding_window"
"#;

#[tokio::test]
async fn trees_are_chosen_by_name_and_shadow_levels_report() {
    let server = TestServer::with_toml(TWO_TREES).await;
    let body = json!({"tree": "api", "descriptors": {"user": "ann"}});
    let first: serde_json::Value = server.post_check(&body).await.json().await.unwrap();
    assert_eq!(first["reason"], "ok", "{first}");
    let second: serde_json::Value = server.post_check(&body).await.json().await.unwrap();
    assert_eq!(second["allowed"], true);
    assert_eq!(second["reason"], "shadow", "{second}");
    assert_eq!(level(&second, "audit")["shadow"], true);

    let response = server.post_check(&json!({"tree": "mail"})).await;
    // Shadow levels are left out of RateLimit headers; `mail` has none anyway.
    assert_eq!(response.headers()["ratelimit-policy"], "\"global\";q=5;w=1");
    let mail: serde_json::Value = response.json().await.unwrap();
    assert_eq!(mail["tree"], "mail");
    assert_eq!(level(&mail, "global")["window_ms"], 1000);
}

/// The README's one-liner: `curl -d` sends a form Content-Type (or none at
/// all from other clients); the body is JSON all the same.
#[rstest::rstest]
#[case::curl_default(Some("application/x-www-form-urlencoded"))]
#[case::no_content_type(None)]
#[case::json_with_charset(Some("application/json; charset=utf-8"))]
#[tokio::test]
async fn the_body_is_read_as_json_whatever_curl_declares(#[case] content_type: Option<&str>) {
    let server = TestServer::start().await;
    let mut request = reqwest::Client::new()
        .post(server.url("/v1/check"))
        .body(r#"{"descriptors":{"category":"errors"}}"#);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["allowed"], true);
    assert_eq!(body["levels"][1]["remaining"], 9);
}
