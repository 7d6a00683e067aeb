//! Every bad request gets a 4xx `application/problem+json` whose `detail` says
//! what to fix.

use rstest::rstest;
use serde_json::Value;

use crate::support::policy::{GLOBAL, default_tree, tree};
use crate::support::server::TestServer;

/// The default tree and `mail` (so `tree` is required), and a small body
/// limit.
async fn server() -> TestServer {
    let config = format!(
        "[server]\nmax_body_bytes = 256\n{}{}",
        default_tree(),
        tree("mail", &[GLOBAL.limit(5).window("1m").algorithm("gcra")])
    );
    TestServer::with_toml(&config).await
}

const JSON: Option<&str> = Some("application/json");

#[rstest]
#[case::malformed_json("POST", "/v1/check", JSON, r#"{"cost": }"#, 400, "line 1 column 10")]
#[case::truncated_json("POST", "/v1/check", JSON, "{\n", 400, "EOF while parsing")]
#[case::empty_body("POST", "/v1/check", JSON, "", 400, "not valid JSON")]
#[case::not_an_object("POST", "/v1/check", JSON, "[1]", 422, "must be a JSON object")]
#[case::tree_not_a_string(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": 5}"#,
    422,
    "`tree` must be a string"
)]
#[case::dry_run_not_a_bool(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "dry_run": "yes"}"#,
    422,
    "`dry_run` must be true or false; got a string"
)]
#[case::descriptors_not_an_object(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "descriptors": ["a"]}"#,
    422,
    "`descriptors` must be an object"
)]
#[case::unknown_field(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "colour": "red"}"#,
    422,
    "unknown field `colour`"
)]
#[case::negative_cost(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "cost": -1}"#,
    422,
    "must not be negative"
)]
#[case::fractional_cost(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "cost": 1.5}"#,
    422,
    "whole number; got 1.5"
)]
#[case::string_cost(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "cost": "1"}"#,
    422,
    "got a string"
)]
#[case::cost_over_max(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "cost": 1000000001}"#,
    422,
    "larger than the maximum 1000000000"
)]
#[case::cost_beyond_u64(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "mail", "cost": 1e30}"#,
    422,
    "larger than the maximum"
)]
#[case::unknown_tree(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "nope"}"#,
    422,
    "tree `nope` is not defined; defined trees: notifications, mail"
)]
#[case::tree_required(
    "POST",
    "/v1/check",
    JSON,
    r#"{"cost": 1}"#,
    422,
    "name one with `tree` (notifications, mail)"
)]
#[case::missing_descriptor(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "notifications", "descriptors": {}}"#,
    422,
    "descriptor `category` is required by level `category`"
)]
#[case::non_string_descriptor(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "notifications", "descriptors": {"category": 5}}"#,
    422,
    "descriptor `category` must be a string; got a number"
)]
#[case::empty_descriptor(
    "POST",
    "/v1/check",
    JSON,
    r#"{"tree": "notifications", "descriptors": {"category": ""}}"#,
    422,
    "descriptor `category` is empty"
)]
#[case::wrong_content_type(
    "POST",
    "/v1/check",
    Some("text/plain"),
    r#"{"tree": "mail"}"#,
    415,
    "Content-Type `text/plain` is not accepted"
)]
#[case::multipart_form(
    "POST",
    "/v1/check",
    Some("multipart/form-data; boundary=x"),
    r#"{"tree": "mail"}"#,
    415,
    "the body must be JSON"
)]
#[case::body_too_large(
    "POST", "/v1/check", JSON, &format!(r#"{{"tree": "{}"}}"#, "m".repeat(300)), 413,
    "larger than 256 bytes"
)]
#[case::get_on_check(
    "GET",
    "/v1/check",
    None,
    "",
    405,
    "GET is not allowed on `/v1/check`; use POST"
)]
#[case::post_on_healthz("POST", "/healthz", JSON, "{}", 405, "use GET")]
#[case::unknown_path("POST", "/v2/check", JSON, "{}", 404, "no endpoint at `/v2/check`")]
#[tokio::test]
async fn bad_request(
    #[case] method: &str,
    #[case] path: &str,
    #[case] content_type: Option<&str>,
    #[case] body: &str,
    #[case] status: u16,
    #[case] detail: &str,
) {
    let server = server().await;
    let mut request = server
        .client
        .request(method.parse().unwrap(), server.url(path))
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();

    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    if status == 405 {
        assert!(response.headers().contains_key("allow"));
    }
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:limitree:problem:")
    );
    assert!(!problem["title"].as_str().unwrap().is_empty());
    let text = problem["detail"].as_str().unwrap();
    assert!(text.contains(detail), "detail {text:?} lacks {detail:?}");
}

#[tokio::test]
async fn a_chunked_body_past_the_limit_is_refused() {
    // Without Content-Length the body is counted as it arrives.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = server().await;
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = "m".repeat(200);
    let request = format!(
        "POST /v1/check HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("larger than 256 bytes"), "{response}");
}

#[tokio::test]
async fn every_problem_in_a_body_is_listed() {
    let server = server().await;
    let response = server
        .client
        .post(server.url("/v1/check"))
        .header("content-type", "application/json")
        .body(r#"{"tree": "mail", "cost": -3, "dry_run": 1, "extra": null}"#)
        .send()
        .await
        .unwrap();
    let problem: Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    for needle in ["`cost`", "`dry_run`", "`extra`"] {
        assert!(detail.contains(needle), "{detail}");
    }
}
