//! Requests hyper refuses before any handler sees them (a head it cannot
//! parse) and bodies whose framing breaks midway: every answer is still
//! problem+json, with the status hyper chose.

use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::TestServer;

/// Sends `request` on a fresh connection; everything the server writes
/// before it closes (each of these answers closes the connection).
async fn exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn many_headers() -> Vec<u8> {
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..150 {
        request.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request
}

fn long_uri() -> Vec<u8> {
    format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100_000)).into_bytes()
}

#[rstest]
#[case::content_length_not_a_number(
    b"POST /v1/check HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n{}".to_vec(),
    "HTTP/1.1 400",
    "malformed-request"
)]
#[case::content_length_given_twice(
    b"POST /v1/check HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
    "HTTP/1.1 400",
    "malformed-request"
)]
#[case::not_http(b"HELLO\r\n\r\n".to_vec(), "HTTP/1.1 400", "malformed-request")]
#[case::too_many_headers(many_headers(), "HTTP/1.1 431", "headers-too-large")]
#[case::uri_of_100_kb(long_uri(), "HTTP/1.1 414", "uri-too-long")]
#[case::bad_chunk_size(
    b"POST /v1/check HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
    "HTTP/1.1 400",
    "body-read"
)]
#[tokio::test]
async fn a_request_hyper_refuses_is_answered_with_problem_json(
    #[case] request: Vec<u8>,
    #[case] status: &str,
    #[case] slug: &str,
) {
    let server = TestServer::start().await;
    let response = exchange(&server, &request).await;
    assert!(response.starts_with(status), "{response}");
    assert!(
        response.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains(&format!("\"type\":\"urn:limitree:problem:{slug}\"")),
        "{response}"
    );
}

/// Pipelined requests keep their own answers; only the bad head after them
/// gets the problem.
#[tokio::test]
async fn a_bad_head_after_pipelined_requests_is_problem_json_and_theirs_are_not() {
    let server = TestServer::start().await;
    let get = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    let response = exchange(&server, format!("{get}{get}HELLO\r\n\r\n").as_bytes()).await;
    assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
    assert_eq!(
        response.matches("{\"status\":\"ok\"}").count(),
        2,
        "{response}"
    );
    let problem = response.find("HTTP/1.1 400").expect("a 400 after them");
    assert_eq!(
        response[..problem].matches("HTTP/1.1 200 OK").count(),
        2,
        "{response}"
    );
    assert!(
        response[problem..].contains("malformed-request"),
        "{response}"
    );
}
