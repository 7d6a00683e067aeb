//! `rediss://`: the server speaks TLS to a Redis that listens with TLS only,
//! and verifies the certificate Redis presents.
//!
//! A CA and a certificate for `127.0.0.1` are made here (rcgen); `redis-server`
//! gets them with `--tls-port`, `limitree serve` trusts the CA through
//! `SSL_CERT_FILE` (read by the system trust store loader, as in production).

use std::time::Duration;

use serde_json::{Value, json};

use crate::redis_support::RedisServer;
use crate::support::certs::make_certificates;
use crate::support::poll::eventually;
use crate::support::served::Served;
use crate::support::{free_port, get_status};

async fn check(client: &reqwest::Client, base: &str) -> Value {
    client
        .post(format!("{base}/v1/check"))
        .json(&json!({"descriptors": {"category": "errors"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn rediss_connects_only_to_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certificates(dir.path(), "redis", "redis");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (path(&files.ca), path(&files.cert), path(&files.key));
    // Another CA, for an instance that must not trust this Redis.
    let other = tempfile::tempdir().unwrap();
    let other_ca = path(&make_certificates(other.path(), "other", "redis").ca);

    let tls_port = free_port();
    let tls_port_s = tls_port.to_string();
    // The plain port stays open for the test's own checks (PING, KEYS).
    let redis = RedisServer::start(&[
        "--tls-port",
        &tls_port_s,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Trusting the CA: decisions are made in Redis, over TLS.
    let mut trusted = Served::start_with_env(
        &["--redis", &url, "--http", "127.0.0.1:0"],
        &[("SSL_CERT_FILE", &ca)],
    );
    eventually(
        "/readyz to answer 200 over rediss://",
        Duration::from_secs(10),
        async || get_status(&client, &format!("{}/readyz", trusted.base)).await == 200,
    )
    .await;
    let reply = check(&client, &trusted.base).await;
    assert_eq!(reply["allowed"], true, "{reply}");
    assert_eq!(reply["reason"], "ok", "{reply}");
    assert_eq!(reply["levels"][1]["remaining"], 9, "{reply}");
    let keys = redis.command(&["KEYS", "{limitree:notifications}*"]);
    assert!(
        keys.contains("category:sl:8:category=6:errors"),
        "keys: {keys}"
    );
    assert_eq!(trusted.terminate().code(), Some(0));

    // Trusting another CA only: the handshake fails, so Redis is unavailable
    // (the default on_error denies) and /readyz says not ready.
    let mut untrusted = Served::start_with_env(
        &["--redis", &url, "--http", "127.0.0.1:0"],
        &[("SSL_CERT_FILE", &other_ca)],
    );
    let reply = check(&client, &untrusted.base).await;
    assert_eq!(reply["allowed"], false, "{reply}");
    assert_eq!(reply["reason"], "store_unavailable", "{reply}");
    let ready = client
        .get(format!("{}/readyz", untrusted.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let problem: Value = ready.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    // Said as such; on a loaded machine the handshake (which loads the trust
    // store) may instead run past the connect deadline, which names it too.
    assert!(
        detail.contains(&format!("TLS handshake with 127.0.0.1:{tls_port} failed"))
            || (detail.contains(&format!("127.0.0.1:{tls_port}"))
                && detail.contains("TLS handshake")),
        "{problem}"
    );
    assert_eq!(untrusted.terminate().code(), Some(0));
    // Nothing more was recorded: the one admission above is all there is.
    assert_eq!(
        redis.command(&[
            "ZCARD",
            "{limitree:notifications}:category:sl:8:category=6:errors"
        ]),
        "1"
    );
}
