//! Graceful shutdown of an in-process server.

use std::time::Duration;

use crate::support::server::TestServer;

#[tokio::test]
async fn run_returns_after_the_shutdown_signal() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    server.check("errors", 1).await;
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("run returns within the grace")
        .unwrap();
    // And the socket no longer accepts.
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}
