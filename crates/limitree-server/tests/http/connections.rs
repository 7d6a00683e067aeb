//! Connections under hostile clients: header, idle and body timeouts, the
//! connection cap, shedding when descriptors run out, the lingering close
//! after a 413, and how fast an idle server exits on SIGTERM.
//!
//! Raw sockets on loopback, so the tests control every byte; the short
//! timeouts (300 ms) keep them quick. Each waits against a generous deadline
//! and asserts what happened, not how fast.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::served::Served;
use crate::support::server::TestServer;

/// Far past every timeout below: a test that waits this long has failed.
const DEADLINE: Duration = Duration::from_secs(5);

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// One response read off `stream`: the head, then `Content-Length` bytes.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = find(&bytes, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if bytes.len() >= end + 4 + length {
                    return;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a response within the deadline");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits for the server to close `stream` (EOF or reset); how long it took.
async fn closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    let eof = async {
        if let Ok(n @ 1..) = stream.read(&mut chunk).await {
            panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            );
        }
    };
    tokio::time::timeout(DEADLINE, eof)
        .await
        .expect("the server closes the connection");
    started.elapsed()
}

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_header_timeout() {
    let server = TestServer::with_toml("[server]\nheader_timeout = \"300ms\"\n").await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    let after = closed(&mut stream).await;
    // Never before the timeout.
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_header_timeout() {
    let server = TestServer::with_toml("[server]\nheader_timeout = \"300ms\"\n").await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    let started = Instant::now();
    // A slowloris: the head never completes, but bytes keep coming.
    let head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut chunk = [0u8; 256];
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut chunk)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&chunk[..n])),
        }
        assert!(
            started.elapsed() < DEADLINE,
            "still open after {DEADLINE:?}"
        );
    }
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );
    assert!(after < DEADLINE, "the whole slow head was accepted");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let server =
        TestServer::with_toml("[server]\nheader_timeout = \"10s\"\nidle_timeout = \"300ms\"\n")
            .await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    stream.write_all(GET_HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let after = closed(&mut stream).await;
    // The idle time began when the response was flushed, a moment before
    // this client read it: not closed at once, at least.
    assert!(
        after >= Duration::from_millis(100),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_pause_longer_than_header_timeout_is_idle_not_slow() {
    let server =
        TestServer::with_toml("[server]\nheader_timeout = \"300ms\"\nidle_timeout = \"60s\"\n")
            .await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    stream.write_all(GET_HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    stream.write_all(GET_HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_that_stops_midway_gets_408_after_body_timeout() {
    let server = TestServer::with_toml("[server]\nbody_timeout = \"300ms\"\n").await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    stream
        .write_all(b"POST /v1/check HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"descriptors\":")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(
        response.contains("urn:limitree:problem:body-timeout"),
        "{response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("limitree_http_body_timeouts_total 1\n"),
        "{metrics}"
    );
}

/// A client that writes its whole body before reading anything, as Python's
/// `urllib` does: without the lingering close it would see a reset instead
/// of the 413.
#[rstest]
#[case::content_length(false)]
#[case::chunked(true)]
#[tokio::test]
async fn a_client_that_writes_8_mib_before_reading_gets_the_413(#[case] chunked: bool) {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    const BODY: usize = 8 << 20;
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {BODY}")
    };
    let head = format!(
        "POST /v1/check HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 << 10];
        for _ in 0..BODY / chunk.len() {
            if chunked {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
            }
            stream.write_all(&chunk).await?;
            if chunked {
                stream.write_all(b"\r\n").await?;
            }
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n").await?;
        }
        stream.flush().await
    };
    tokio::time::timeout(DEADLINE, write)
        .await
        .expect("the server reads the body on")
        .expect("the whole body is written: no reset");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("urn:limitree:problem:body-too-large"),
        "{response}"
    );
}

/// A POST whose head is in and whose body is not: the connection is busy.
async fn busy_connection(base: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr(base)).await.unwrap();
    stream
        .write_all(b"POST /v1/check HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn at_max_connections_with_every_one_busy_a_new_one_gets_503() {
    let server = TestServer::with_toml("[server]\nmax_connections = 2\n").await;
    let busy = [
        busy_connection(&server.base).await,
        busy_connection(&server.base).await,
    ];
    // Let the server take both requests in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stream = TcpStream::connect(addr(&server.base)).await.unwrap();
    stream.write_all(GET_HEALTHZ).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.contains("urn:limitree:problem:too-many-connections"),
        "{response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 1"),
        "{response}"
    );
    drop(busy);
    let metrics = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(r) = server.client.get(server.url("/metrics")).send().await
                && r.status() == 200
            {
                return r.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    assert!(
        metrics.contains("limitree_http_connections_refused_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn at_max_connections_the_oldest_idle_one_makes_room() {
    let server = TestServer::with_toml("[server]\nmax_connections = 2\n").await;
    let mut oldest = TcpStream::connect(addr(&server.base)).await.unwrap();
    oldest.write_all(GET_HEALTHZ).await.unwrap();
    read_response(&mut oldest).await;
    let mut newer = TcpStream::connect(addr(&server.base)).await.unwrap();
    newer.write_all(GET_HEALTHZ).await.unwrap();
    read_response(&mut newer).await;

    let mut new = TcpStream::connect(addr(&server.base)).await.unwrap();
    new.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let metrics = read_response(&mut new).await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("limitree_http_connections_closed_total{reason=\"shed\"} 1\n"),
        "{metrics}"
    );
    closed(&mut oldest).await;
    // The newer idle connection still serves.
    newer.write_all(GET_HEALTHZ).await.unwrap();
    assert!(read_response(&mut newer).await.starts_with("HTTP/1.1 200"));
}

/// `GET path` on a fresh blocking connection; the whole response (the server
/// closes after it).
fn get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = StdStream::connect(addr)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// Far more idle sockets than the server has descriptors (the issue's
/// numbers): a new client is still answered, within a few seconds and long
/// before `header_timeout` (10 s) would free anything, and the failures show
/// in the log and the metrics.
#[test]
fn a_flood_of_idle_connections_under_a_low_fd_limit_still_lets_a_new_client_in() {
    let served = Served::start_with_fd_limit(256, &["--http", "127.0.0.1:0"]);
    let addr = addr(&served.base);
    let flood: Vec<StdStream> = (0..373)
        .map(|_| StdStream::connect(&addr).unwrap())
        .collect();
    // Let the server run out of descriptors.
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let response = get(&addr, "/healthz").expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(started.elapsed() < DEADLINE);

    let metrics = get(&addr, "/metrics").unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in {metrics}"))
    };
    assert!(value("limitree_http_accept_errors_total ") > 0, "{metrics}");
    assert!(
        value("limitree_http_connections_closed_total{reason=\"shed\"} ") > 0,
        "{metrics}"
    );
    let logged = served
        .lines
        .try_iter()
        .any(|l| l.contains("cannot accept a connection"));
    assert!(logged, "the accept failure is logged");
    drop(flood);
}

/// Slow-header clients holding every descriptor, each still sending a byte
/// now and then: the oldest are shed for a new client.
#[test]
fn slow_header_clients_under_a_low_fd_limit_still_let_a_new_client_in() {
    let served = Served::start_with_fd_limit(256, &["--http", "127.0.0.1:0"]);
    let addr = addr(&served.base);
    let mut slow: Vec<StdStream> = (0..300)
        .map(|_| {
            let mut s = StdStream::connect(&addr).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n");
            s
        })
        .collect();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let dripping = std::thread::spawn(move || {
        while stopped.recv_timeout(Duration::from_millis(200)).is_err() {
            for s in &mut slow {
                let _ = s.write_all(b"X");
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let response = get(&addr, "/healthz").expect("an answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(started.elapsed() < DEADLINE);
    stop.send(()).unwrap();
    dripping.join().unwrap();
}

/// With nothing in flight (a keep-alive connection idle after a request, and
/// one that never sent anything) SIGTERM exits at once. The server itself
/// takes a few milliseconds; 900 ms is slack for a loaded two-core machine,
/// and still fails if shutdown waits on an idle connection or a 1 s timer.
#[test]
fn sigterm_with_idle_connections_exits_well_under_a_second() {
    let mut served = Served::start(&["--http", "127.0.0.1:0"]);
    let addr = addr(&served.base);
    let mut kept = StdStream::connect(&addr).unwrap();
    kept.set_read_timeout(Some(DEADLINE)).unwrap();
    kept.write_all(GET_HEALTHZ).unwrap();
    let mut chunk = [0u8; 1024];
    let n = kept.read(&mut chunk).unwrap();
    assert!(chunk[..n].starts_with(b"HTTP/1.1 200"));
    let _silent = StdStream::connect(&addr).unwrap();

    let started = Instant::now();
    let status = served.terminate();
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(900), "exit took {took:?}");
}
