//! `/healthz`, `/readyz` and request ids.

use std::sync::Arc;

use limitree::store::BoxFuture;
use limitree::{Chain, ChainOutcome, Limiter, Mode, Store, StoreError};
use limitree_server::config::Config;
use limitree_server::http::AppState;
use limitree_server::notify::Relay;
use serde_json::Value;

use crate::support::server::TestServer;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let server = TestServer::start().await;
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");

    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "memory");
}

#[tokio::test]
async fn a_sane_request_id_is_echoed() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42");
}

#[tokio::test]
async fn a_missing_or_strange_request_id_is_replaced_by_a_uuid() {
    let server = TestServer::start().await;
    for given in [None, Some("has spaces"), Some(&*"x".repeat(129))] {
        let mut request = server.client.get(server.url("/nowhere"));
        if let Some(given) = given {
            request = request.header("x-request-id", given);
        }
        let response = request.send().await.unwrap();
        // Errors carry it too.
        assert_eq!(response.status(), 404);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.as_bytes()[14], b'4', "a v4 uuid: {id}");
    }
}

/// A store that is never reachable, as a Redis store would be when Redis is down.
#[derive(Debug)]
struct DownStore;

impl Store for DownStore {
    fn decide<'a>(
        &'a self,
        _chain: &'a Chain<'a>,
        _mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "connection refused".to_owned(),
        ))))
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "connection refused".to_owned(),
        ))))
    }

    fn kind(&self) -> &'static str {
        "down"
    }
}

#[tokio::test]
async fn a_failing_store_is_503_problem_json() {
    let config = Config::builtin();
    let limiter = Limiter::new(Arc::new(config.policy.clone()), Arc::new(DownStore));
    let clock = Arc::new(limitree::SystemClock::new());
    let notify = Relay::new(&config.notify, limiter.clone(), clock.clone(), |_| None);
    let state = AppState::new(&config, limiter, notify, Arc::default(), clock, None);
    let server = TestServer::with_state(state, &config).await;

    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let problem: Value = ready.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );

    let check = server
        .post_check(&serde_json::json!({"descriptors": {"category": "errors"}}))
        .await;
    assert_eq!(check.status(), 503);
    let problem: Value = check.json().await.unwrap();
    assert_eq!(problem["type"], "urn:limitree:problem:store-unavailable");

    // Liveness does not depend on the store.
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// `/metrics` counts check decisions per tree and reason (series fixed by the
/// policy, whatever clients send).
#[tokio::test]
async fn metrics_count_check_decisions_by_reason() {
    let server = TestServer::start().await;
    for _ in 0..11 {
        server.check("errors", 1).await;
    }
    server.check("errors", 11).await;
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"limitree_check_decisions_total{tree="notifications",reason="ok"} 10"#,
        r#"limitree_check_decisions_total{tree="notifications",reason="limited"} 1"#,
        r#"limitree_check_decisions_total{tree="notifications",reason="insufficient_capacity"} 1"#,
        r#"limitree_check_decisions_total{tree="notifications",reason="store_unavailable"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}
