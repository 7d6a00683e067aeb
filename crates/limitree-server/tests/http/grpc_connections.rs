//! The gRPC listener's connections under hostile clients, against `limitree
//! serve`: a client that never completes its TLS handshake or HTTP/2 preface
//! is closed after `header_timeout`, an HTTP/2 connection with no call open
//! after `idle_timeout`, and a flood of idle sockets holding every
//! descriptor still lets a new tonic client (and `GET /metrics`) in; a call
//! whose request never completes is ended after `body_timeout`, and at
//! `max_connections` with a call open on each a new client is closed.
//!
//! Short timeouts (300 ms) keep the tests quick; each waits against a
//! generous deadline and asserts what happened, not how fast.

use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codegen::{Bytes, http};

use crate::support::certs::make_certificates;
use crate::support::poll::eventually;
use crate::support::rls::{ask, client, code, descriptor, grpc_addr, request};
use crate::support::served::{Served, write_config};

/// Far past every timeout below: a test that waits this long has failed.
const DEADLINE: Duration = Duration::from_secs(5);

/// The HTTP/2 client preface and an empty SETTINGS frame: what a client sends
/// before its first request.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Waits for the server to close `stream` (EOF or reset), reading and
/// dropping what it sends first (its SETTINGS); how long it took.
async fn closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    let eof = async { while let Ok(1..) = stream.read(&mut chunk).await {} };
    tokio::time::timeout(DEADLINE, eof)
        .await
        .expect("the server closes the connection");
    started.elapsed()
}

/// `GET /metrics` from `served`'s HTTP listener.
async fn scrape(served: &Served) -> String {
    reqwest::get(format!("{}/metrics", served.base))
        .await
        .expect("an answer to GET /metrics")
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (with its labels, as written) in `metrics`.
fn value(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// What a slow client does before it stops sending.
#[derive(Debug, Clone, Copy)]
enum Sends {
    /// Nothing: no preface.
    Nothing,
    /// The preface and SETTINGS, then no request.
    PrefaceOnly,
    /// Nothing, to a TLS listener: no ClientHello.
    NoTlsHandshake,
}

#[rstest]
#[case::nothing(Sends::Nothing)]
#[case::the_preface_but_no_request(Sends::PrefaceOnly)]
#[case::no_tls_handshake(Sends::NoTlsHandshake)]
#[tokio::test]
async fn a_grpc_client_that_sends_no_request_is_closed_after_header_timeout(#[case] sends: Sends) {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = "[server]\nheader_timeout = \"300ms\"\n".to_owned();
    if let Sends::NoTlsHandshake = sends {
        let files = make_certificates(dir.path(), "grpc", "grpc");
        toml.push_str(&format!(
            "grpc_tls = {{ cert = {:?}, key = {:?} }}\n",
            files.cert.to_str().unwrap(),
            files.key.to_str().unwrap()
        ));
    }
    let config = write_config(&format!("grpc-header-timeout-{sends:?}.toml"), &toml);
    let served = Served::start(&[
        "--http",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let mut stream = TcpStream::connect(grpc_addr(&served)).await.unwrap();
    if let Sends::PrefaceOnly = sends {
        stream.write_all(PREFACE).await.unwrap();
    }
    let after = closed(&mut stream).await;
    // Never before the timeout (the sweep may be up to an eighth late).
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );

    let metrics = eventually("the close counted", DEADLINE, async || {
        let metrics = scrape(&served).await;
        match value(
            &metrics,
            "limitree_grpc_connections_closed_total{reason=\"header_timeout\"}",
        ) {
            Some(1) => Ok(metrics),
            _ => Err(metrics),
        }
    })
    .await;
    assert_eq!(
        value(&metrics, "limitree_grpc_connections"),
        Some(0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_grpc_connection_with_no_call_open_is_closed_after_idle_timeout() {
    let config = write_config(
        "grpc-idle-timeout.toml",
        "[server]\nheader_timeout = \"10s\"\nidle_timeout = \"300ms\"\n",
    );
    let served = Served::start(&[
        "--http",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let mut client = client(&served).await;
    let errors = || request("notifications", vec![descriptor(&[("category", "errors")])]);
    assert_eq!(
        code(ask(&mut client, errors()).await.overall_code),
        Code::Ok
    );
    let idle_since = Instant::now();
    // Open, and not closed as soon as its call ended.
    let metrics = scrape(&served).await;
    assert_eq!(
        value(&metrics, "limitree_grpc_connections"),
        Some(1),
        "{metrics}"
    );

    eventually("the idle connection closed", DEADLINE, async || {
        let metrics = scrape(&served).await;
        let idle = value(
            &metrics,
            "limitree_grpc_connections_closed_total{reason=\"idle_timeout\"}",
        );
        match (idle, value(&metrics, "limitree_grpc_connections")) {
            (Some(1), Some(0)) => Ok(()),
            _ => Err(metrics),
        }
    })
    .await;
    let after = idle_since.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
    // The client reconnects and is answered as before.
    let answer = ask(&mut client, errors()).await;
    assert_eq!(code(answer.overall_code), Code::Ok);
    assert_eq!(answer.statuses[0].limit_remaining, 8);
}

/// Far more idle sockets on the gRPC port than the server has descriptors
/// (the HTTP flood test's numbers): a new tonic client is answered within a
/// few seconds, long before `header_timeout` (10 s) would free anything, the
/// HTTP listener still answers `GET /metrics`, and the failures are counted.
#[tokio::test]
async fn a_flood_of_idle_grpc_connections_under_a_low_fd_limit_still_lets_a_new_client_in() {
    let served = Served::start_with_fd_limit(256, &["--http", "127.0.0.1:0"]);
    let addr = grpc_addr(&served).to_owned();
    let flood: Vec<StdStream> = (0..373)
        .map(|_| StdStream::connect(&addr).unwrap())
        .collect();

    let started = Instant::now();
    let call = async {
        let mut client = client(&served).await;
        ask(
            &mut client,
            request("notifications", vec![descriptor(&[("category", "errors")])]),
        )
        .await
    };
    let answer = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("an answer while the flood holds every descriptor");
    assert_eq!(code(answer.overall_code), Code::Ok);
    assert!(started.elapsed() < DEADLINE);

    let metrics = tokio::time::timeout(DEADLINE, scrape(&served))
        .await
        .expect("GET /metrics answered while the gRPC flood holds every descriptor");
    assert!(
        value(&metrics, "limitree_grpc_accept_errors_total").is_some_and(|n| n > 0),
        "{metrics}"
    );
    assert!(
        value(
            &metrics,
            "limitree_grpc_connections_closed_total{reason=\"shed\"}"
        )
        .is_some_and(|n| n > 0),
        "{metrics}"
    );
    let logged = served
        .lines
        .try_iter()
        .any(|l| l.contains("cannot accept a connection") && l.contains("grpc"));
    assert!(logged, "the accept failure is logged");
    drop(flood);
}

/// A `ShouldRateLimit` call opened over raw HTTP/2 whose request never
/// completes: two bytes of the five-byte message header, the stream left open.
struct UnfinishedCall {
    response: h2::client::ResponseFuture,
    _body: h2::SendStream<Bytes>,
    _connection: tokio::task::JoinHandle<()>,
}

async fn unfinished_call(served: &Served) -> UnfinishedCall {
    let tcp = TcpStream::connect(grpc_addr(served)).await.unwrap();
    let (mut sender, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post(format!(
        "http://{}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        grpc_addr(served)
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut body) = sender.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0]), false).unwrap();
    UnfinishedCall {
        response,
        _body: body,
        _connection: connection,
    }
}

#[tokio::test]
async fn a_grpc_call_whose_request_never_completes_is_ended_after_body_timeout() {
    let config = write_config(
        "grpc-body-timeout.toml",
        "[server]\nbody_timeout = \"300ms\"\n",
    );
    let served = Served::start(&[
        "--http",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let started = Instant::now();
    let call = unfinished_call(&served).await;
    let response = tokio::time::timeout(DEADLINE, call.response)
        .await
        .expect("the call is ended")
        .expect("with a response");
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(250), "ended after {after:?}");
    // Trailers-only: the status is in the headers.
    let status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(status.as_deref(), Some("1"), "CANCELLED: {response:?}");
}

#[tokio::test]
async fn at_max_connections_with_a_call_open_on_each_a_new_grpc_client_is_closed_and_counted() {
    let config = write_config(
        "grpc-max-connections.toml",
        "[server]\nmax_connections = 1\n",
    );
    let served = Served::start(&[
        "--http",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let busy = unfinished_call(&served).await;
    eventually("the connection accepted", DEADLINE, async || {
        let metrics = scrape(&served).await;
        match value(&metrics, "limitree_grpc_connections") {
            Some(1) => Ok(()),
            _ => Err(metrics),
        }
    })
    .await;
    // The server sheds a connection still before its first call once it is
    // a second old: past that, only its open call keeps this one from being
    // shed for the new client (a real-time age in the server, so a real wait).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut refused = TcpStream::connect(grpc_addr(&served)).await.unwrap();
    refused.write_all(PREFACE).await.unwrap_or(());
    closed(&mut refused).await;
    let metrics = scrape(&served).await;
    assert_eq!(
        value(&metrics, "limitree_grpc_connections_refused_total"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            "limitree_grpc_connections_closed_total{reason=\"shed\"}"
        ),
        Some(0),
        "{metrics}"
    );
    served.wait_for_line("gRPC connection refused", DEADLINE);
    drop(busy);
}
