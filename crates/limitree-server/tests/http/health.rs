//! `/healthz`, `/readyz` and request ids.

use serde_json::Value;

use crate::support::TestServer;

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
