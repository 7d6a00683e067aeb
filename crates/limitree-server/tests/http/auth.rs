//! `[server.auth]` against `limitree serve` (a child process) over real
//! sockets: every endpoint with no, a wrong, a check and an admin token, over
//! HTTP and gRPC; tokens from `${VAR}` and `file:`; the config errors; the
//! log never holding a token; the warning for an exposed server without
//! tokens; and the CLI client's `--token`.

use std::process::Command;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use reqwest::Method;
use rstest::rstest;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::certs::make_certificates;
use crate::support::rls::{channel, grpc_addr};
use crate::support::served::{BIN, Served, text, write_config};

/// The check token, passed to the server in `LIMITREE_TEST_CHECK`.
const CHECK: &str = "chk-7f3a9c21e0d4b6a8";
/// The admin token, read by the server from a `file:`.
const ADMIN: &str = "adm-51be02c9d7f4e3a1";
/// A token the server does not know.
const WRONG: &str = "bad-0000000000000000";

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Nothing,
    Wrong,
    Check,
    Admin,
}

impl Sent {
    const ALL: [Sent; 4] = [Sent::Nothing, Sent::Wrong, Sent::Check, Sent::Admin];

    fn token(self) -> Option<&'static str> {
        match self {
            Sent::Nothing => None,
            Sent::Wrong => Some(WRONG),
            Sent::Check => Some(CHECK),
            Sent::Admin => Some(ADMIN),
        }
    }
}

/// A server with a check token from the environment and an admin token from
/// a file (with the trailing newline an editor leaves), plus `extra` lines in
/// `[server.auth]`.
fn protected(name: &str, extra: &str, args: &[&str]) -> Served {
    let token_file = write_config(&format!("auth-{name}-admin-token"), &format!("{ADMIN}\n"));
    let config = write_config(
        &format!("auth-{name}.toml"),
        &format!(
            "[server.auth]\ncheck = [\"${{LIMITREE_TEST_CHECK}}\"]\nadmin = [\"file:{}\"]\n{extra}",
            token_file.display()
        ),
    );
    let mut all = vec!["--config", config.to_str().unwrap()];
    if !args.contains(&"--http") {
        all.extend(["--http", "127.0.0.1:0"]);
    }
    all.extend_from_slice(args);
    Served::start_with_env(&all, &[("LIMITREE_TEST_CHECK", CHECK)])
}

/// The body each endpoint is sent.
fn body_for(path: &str) -> Option<Value> {
    match path {
        "/v1/check" => Some(json!({"descriptors": {"category": "auth"}})),
        "/v1/notify" => Some(json!({"category": "auth", "text": "hello"})),
        "/json" => Some(
            json!({"domain": "notifications", "descriptors": [{"entries": [{"key": "category", "value": "auth"}]}]}),
        ),
        _ => None,
    }
}

async fn send(
    http: &reqwest::Client,
    served: &Served,
    method: &Method,
    path: &str,
    sent: Sent,
) -> reqwest::Response {
    let mut request = http.request(method.clone(), format!("{}{path}", served.base));
    if let Some(body) = body_for(path) {
        request = request.json(&body);
    }
    if let Some(token) = sent.token() {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// What an endpoint answers when it is let through, to tell it from a refusal.
#[derive(Debug, Clone, Copy)]
enum Through {
    /// This status.
    Status(u16),
    /// Whatever the endpoint answers without `[server.auth]` (measured on an
    /// open server): `GET /` is open, and whether a status page is there
    /// depends on the build, not on auth.
    AsUnprotected,
}

/// Every endpoint on each scope, with each kind of credential: a path
/// outside the open list needs a token; a check token does not open admin
/// paths (403); unknown paths answer 401 without an admin token, so they look
/// like every other protected path, and 404 with one.
#[rstest]
#[case::check(Method::POST, "/v1/check", "check", Through::Status(200))]
// No webhook is configured: the relay's own 503 shows it was let through.
#[case::notify(Method::POST, "/v1/notify", "check", Through::Status(503))]
#[case::envoy_bridge(Method::POST, "/json", "check", Through::Status(200))]
#[case::unknown_v1_path(Method::GET, "/v1/anything", "admin", Through::Status(404))]
#[case::unknown_v1_delete(Method::DELETE, "/v1/buckets-or-not/x", "admin", Through::Status(404))]
#[case::unknown_path(Method::GET, "/anything", "admin", Through::Status(404))]
#[case::health_with_a_slash(Method::GET, "/healthz/", "admin", Through::Status(404))]
#[case::healthz(Method::GET, "/healthz", "open", Through::Status(200))]
#[case::readyz(Method::GET, "/readyz", "open", Through::Status(200))]
#[case::metrics(Method::GET, "/metrics", "open", Through::Status(200))]
#[case::status_page(Method::GET, "/", "open", Through::AsUnprotected)]
// The introspection API and the status page's JSON are admin paths.
#[case::policy(Method::GET, "/v1/policy", "admin", Through::Status(200))]
#[case::status_json(Method::GET, "/v1/status", "admin", Through::Status(200))]
#[case::buckets(
    Method::GET,
    "/v1/buckets?level=category",
    "admin",
    Through::Status(200)
)]
#[case::bucket(
    Method::GET,
    "/v1/buckets/notifications/global/*",
    "admin",
    Through::Status(200)
)]
#[case::bucket_reset(
    Method::DELETE,
    "/v1/buckets/notifications/global/*",
    "admin",
    Through::Status(200)
)]
#[tokio::test]
async fn every_endpoint_answers_by_its_scope(
    #[case] method: Method,
    #[case] path: &str,
    #[case] scope: &str,
    #[case] through: Through,
) {
    let http = reqwest::Client::new();
    let through = match through {
        Through::Status(status) => status,
        Through::AsUnprotected => {
            let open = Served::start(&["--http", "127.0.0.1:0"]);
            send(&http, &open, &method, path, Sent::Nothing)
                .await
                .status()
                .as_u16()
        }
    };
    assert!(![401, 403].contains(&through), "{through}");
    let served = protected(&format!("scope-{}", path.replace('/', "_")), "", &[]);
    for sent in Sent::ALL {
        let response = send(&http, &served, &method, path, sent).await;
        let status = response.status().as_u16();
        let expected = match (scope, sent) {
            ("open", _) | ("check", Sent::Check | Sent::Admin) | ("admin", Sent::Admin) => through,
            ("admin", Sent::Check) => 403,
            _ => 401,
        };
        assert_eq!(status, expected, "{method} {path} with {sent:?}");
        if [401, 403].contains(&status) {
            assert_refusal(response, sent).await;
        }
    }
}

/// A refusal is problem+json with an RFC 6750 challenge that names the error
/// only when credentials were sent, and never a token.
async fn assert_refusal(response: reqwest::Response, sent: Sent) {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let expected = match sent {
        Sent::Nothing => "Bearer realm=\"limitree\"",
        Sent::Wrong => "Bearer realm=\"limitree\", error=\"invalid_token\"",
        Sent::Check => "Bearer realm=\"limitree\", error=\"insufficient_scope\", scope=\"admin\"",
        Sent::Admin => panic!("an admin token is never refused"),
    };
    assert_eq!(challenge, expected);
    let body = response.text().await.unwrap();
    for token in [CHECK, ADMIN, WRONG] {
        assert!(!body.contains(token), "{body}");
    }
}

/// A client without a token learns nothing from an unknown `/v1/…` path
/// that it does not learn from a real admin path (`/metrics` with
/// `open_metrics = false`): the same status, challenge and body.
#[tokio::test]
async fn an_unknown_path_is_refused_exactly_like_a_real_one() {
    let served = protected("closed-metrics", "open_metrics = false\n", &[]);
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    for path in ["/metrics", "/v1/anything", "/v1/policy"] {
        let response = send(&http, &served, &Method::GET, path, Sent::Nothing).await;
        let status = response.status().as_u16();
        let challenge = response.headers()["www-authenticate"].clone();
        let body = response.text().await.unwrap();
        seen.push((status, challenge, body));
    }
    assert_eq!(seen[0].0, 401);
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:#?}");
    // With the admin token, the real one answers and the unknown one is a 404.
    let metrics = send(&http, &served, &Method::GET, "/metrics", Sent::Admin).await;
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("limitree_check_decisions_total")
    );
    let unknown = send(&http, &served, &Method::GET, "/v1/anything", Sent::Admin).await;
    assert_eq!(unknown.status(), 404);
    let with_check = send(&http, &served, &Method::GET, "/metrics", Sent::Check).await;
    assert_eq!(with_check.status(), 403);
}

#[rstest]
#[case::lower_case_scheme("bearer CHECK", 200)]
#[case::another_scheme("Basic Y2hlY2s6Y2hlY2s=", 401)]
#[case::scheme_alone("Bearer", 400)]
#[case::two_tokens("Bearer CHECK CHECK", 400)]
#[case::a_prefix_of_the_token("Bearer chk-7f3a9c21", 401)]
#[case::the_token_and_more("Bearer CHECKx", 401)]
#[tokio::test]
async fn authorization_headers_are_read_strictly(#[case] header: &str, #[case] status: u16) {
    let served = protected(&format!("header-{status}-{}", header.len()), "", &[]);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/check", served.base))
        .header("authorization", header.replace("CHECK", CHECK))
        .json(&json!({"descriptors": {"category": "auth"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), status, "{header}");
}

fn rls_request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "notifications".to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "category".to_owned(),
                value: "auth".to_owned(),
            }],
            ..Default::default()
        }],
        hits_addend: 0,
    }
}

/// `ShouldRateLimit` needs a check (or admin) token in `authorization`
/// metadata, else `UNAUTHENTICATED` (and nothing is charged); the health
/// service needs none.
#[tokio::test]
async fn grpc_calls_need_a_token_and_health_stays_open() {
    let served = protected("grpc", "", &[]);
    let mut client = RateLimitServiceClient::new(channel(&served).await);
    for sent in Sent::ALL {
        let mut request = tonic::Request::new(rls_request());
        if let Some(token) = sent.token() {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let answer = client.should_rate_limit(request).await;
        match sent {
            Sent::Nothing | Sent::Wrong => {
                let status = answer.unwrap_err();
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{sent:?}");
                for token in [CHECK, ADMIN, WRONG] {
                    assert!(!status.message().contains(token), "{status:?}");
                }
            }
            Sent::Check | Sent::Admin => {
                let answer = answer.unwrap().into_inner();
                assert_eq!(answer.overall_code, Code::Ok as i32, "{sent:?}");
            }
        }
    }
    // Two calls were decided, each charging one; the refused ones nothing.
    let http = reqwest::Client::new();
    let reply: Value = send(&http, &served, &Method::POST, "/v1/check", Sent::Check)
        .await
        .json()
        .await
        .unwrap();
    let category = reply["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "category")
        .unwrap();
    assert_eq!(category["remaining"], 7, "{reply}");

    let mut health = HealthClient::new(channel(&served).await);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

/// Tokens over gRPC with TLS (`[server] grpc_tls`), where a bearer token
/// cannot be read off the wire: the same refusals and grants as over h2c.
#[tokio::test]
async fn grpc_over_tls_checks_tokens_too() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certificates(dir.path(), "auth-tls", "auth-tls");
    let config = write_config(
        "auth-tls.toml",
        &format!(
            "[server]\ngrpc_tls = {{ cert = {:?}, key = {:?} }}\n[server.auth]\ncheck = [\"${{LIMITREE_TEST_CHECK}}\"]\n",
            files.cert.to_str().unwrap(),
            files.key.to_str().unwrap()
        ),
    );
    let served = Served::start_with_env(
        &[
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("LIMITREE_TEST_CHECK", CHECK)],
    );
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(&files.ca).unwrap());
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", grpc_addr(&served)))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca))
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let mut client = RateLimitServiceClient::new(channel);
    for sent in [Sent::Nothing, Sent::Wrong, Sent::Check] {
        let mut request = tonic::Request::new(rls_request());
        if let Some(token) = sent.token() {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        match client.should_rate_limit(request).await {
            Ok(answer) => {
                assert_eq!(sent, Sent::Check);
                assert_eq!(answer.into_inner().overall_code, Code::Ok as i32);
            }
            Err(status) => {
                assert_ne!(sent, Sent::Check, "{status:?}");
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{sent:?}");
            }
        }
    }
}

/// No token (right or wrong) appears anywhere in the server's log, even at
/// debug level with the access log on, after every kind of request over
/// HTTP and gRPC, refused and let through.
#[tokio::test]
async fn tokens_never_appear_in_the_log() {
    let token_file = write_config("auth-log-admin-token", &format!("{ADMIN}\n"));
    let config = write_config(
        "auth-log.toml",
        &format!(
            "[server.auth]\ncheck = [\"${{LIMITREE_TEST_CHECK}}\"]\nadmin = [\"file:{}\"]\nopen_metrics = false\n",
            token_file.display()
        ),
    );
    let mut served = Served::start_with_env(
        &[
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[
            ("LIMITREE_TEST_CHECK", CHECK),
            ("RUST_LOG", "debug,limitree::access=info"),
        ],
    );
    let http = reqwest::Client::new();
    for path in ["/v1/check", "/v1/notify", "/json", "/metrics", "/v1/x"] {
        for sent in Sent::ALL {
            let _ = send(&http, &served, &Method::POST, path, sent).await;
            let _ = send(&http, &served, &Method::GET, path, sent).await;
        }
    }
    // A malformed header too: its value is not echoed either.
    let _ = http
        .get(format!("{}/v1/x", served.base))
        .header("authorization", format!("Bearer {WRONG} {CHECK}"))
        .send()
        .await
        .unwrap();
    let mut client = RateLimitServiceClient::new(channel(&served).await);
    for sent in Sent::ALL {
        let mut request = tonic::Request::new(rls_request());
        if let Some(token) = sent.token() {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let _ = client.should_rate_limit(request).await;
    }
    drop(client);
    assert!(served.terminate().success());
    let log: Vec<String> = served
        .early
        .iter()
        .cloned()
        .chain(served.lines.try_iter())
        .collect();
    // The access log ran (so the requests were logged), and the refusals were.
    assert!(
        log.iter()
            .any(|l| l.contains("request finished") && l.contains("status=401")),
        "{log:#?}"
    );
    for token in [CHECK, ADMIN, WRONG] {
        let leaks: Vec<&String> = log.iter().filter(|l| l.contains(token)).collect();
        assert!(leaks.is_empty(), "{token} in {leaks:#?}");
    }
}

/// `limitree config check` and `limitree serve` on a config that writes a
/// token, or names an unset variable or a missing file: exit 64, the key
/// named with line and column, the value never repeated.
#[rstest]
#[case::literal_token(
    "check = [\"s3cr3t-token\"]\n",
    "[server.auth] check[0]: a token must not be written in the config file"
)]
#[case::unset_variable(
    "check = [\"${LIMITREE_TEST_UNSET_TOKEN}\"]\n",
    "line 2, column 10: [server.auth] check[0]: ${LIMITREE_TEST_UNSET_TOKEN} is not set"
)]
#[case::missing_file(
    "admin = [\"file:/nonexistent/limitree-s3cr3t\"]\n",
    "line 2, column 10: [server.auth] admin[0]: cannot read the token file /nonexistent/limitree-s3cr3t"
)]
fn bad_tokens_stop_the_server_and_fail_the_check(#[case] auth: &str, #[case] expected: &str) {
    let name = format!("bad-auth-{}.toml", auth.len());
    let config = write_config(&name, &format!("[server.auth]\n{auth}"));
    let config = config.to_str().unwrap();
    for args in [
        vec!["config", "check", config],
        vec![
            "serve",
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "off",
            "--config",
            config,
        ],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("LIMITREE_TEST_UNSET_TOKEN")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{config}: ")), "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if auth.contains("s3cr3t-token") {
            assert!(!stderr.contains("s3cr3t-token"), "{stderr}");
        }
    }
}

/// `config check` says where tokens come from, never what they are.
#[test]
fn config_check_names_the_token_sources() {
    let token_file = write_config("auth-describe-admin-token", &format!("{ADMIN}\n"));
    let config = write_config(
        "auth-describe.toml",
        &format!(
            "[server.auth]\ncheck = [\"${{LIMITREE_TEST_CHECK}}\"]\nadmin = [\"file:{}\"]\n",
            token_file.display()
        ),
    );
    let out = Command::new(BIN)
        .args(["config", "check", config.to_str().unwrap()])
        .env("LIMITREE_TEST_CHECK", CHECK)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = format!(
        "auth: bearer tokens; check [${{LIMITREE_TEST_CHECK}}], admin [file:{}], /metrics open",
        token_file.display()
    );
    assert!(stdout.lines().any(|l| l == line), "{line:?} in\n{stdout}");
    assert!(
        !stdout.contains(CHECK) && !stdout.contains(ADMIN),
        "{stdout}"
    );
}

/// One WARN line when a listener is not on loopback and there are no tokens;
/// none on loopback, and none with `[server.auth]`.
#[rstest]
#[case::http_exposed(&["--http", "0.0.0.0:0", "--grpc", "127.0.0.1:0"], false, Some("serving HTTP 0.0.0.0:0 (not loopback) without API tokens"))]
#[case::grpc_exposed(&["--http", "127.0.0.1:0", "--grpc", "0.0.0.0:0"], false, Some("serving gRPC 0.0.0.0:0 (not loopback) without API tokens"))]
#[case::both_exposed(&["--http", "0.0.0.0:0", "--grpc", "0.0.0.0:0"], false, Some("serving HTTP 0.0.0.0:0 and gRPC 0.0.0.0:0 (not loopback)"))]
#[case::loopback(&["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"], false, None)]
#[case::exposed_with_tokens(&["--http", "0.0.0.0:0", "--grpc", "0.0.0.0:0"], true, None)]
fn an_exposed_server_without_tokens_warns_once(
    #[case] args: &[&str],
    #[case] with_auth: bool,
    #[case] expected: Option<&str>,
) {
    let served = if with_auth {
        protected(&format!("exposed-{}", args.join("")), "", args)
    } else {
        Served::start(args)
    };
    let warnings: Vec<&String> = served
        .early
        .iter()
        .filter(|l| l.contains("without API tokens"))
        .collect();
    match expected {
        None => assert!(warnings.is_empty(), "{warnings:#?}"),
        Some(expected) => {
            assert_eq!(warnings.len(), 1, "{:#?}", served.early);
            assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
            assert!(warnings[0].contains(expected), "{}", warnings[0]);
            assert!(warnings[0].contains("add [server.auth]"), "{}", warnings[0]);
        }
    }
}

/// `limitree check` / `limitree notify` with `--token` or `LIMITREE_TOKEN`
/// against a protected server; without one they fail with the server's
/// explanation (exit 2).
#[test]
fn the_cli_client_sends_its_token() {
    let served = protected("cli", "", &[]);
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .args(["--url", &served.base])
            .env_remove("LIMITREE_TOKEN")
            .env_remove("SLACK_WEBHOOK_URL");
        if let Some(token) = env {
            command.env("LIMITREE_TOKEN", token);
        }
        command.output().unwrap()
    };
    let check = ["check", "category=cli"];

    let refused = run(&check, None);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("Unauthorized (401): this endpoint needs an API token"),
        "{stderr}"
    );
    let wrong = run(&check, Some(WRONG));
    assert!(
        text(&wrong.stderr).contains("Invalid token (401)"),
        "{}",
        text(&wrong.stderr)
    );

    let by_flag = run(&["check", "--token", CHECK, "category=cli"], None);
    assert_eq!(by_flag.status.code(), Some(0), "{}", text(&by_flag.stderr));
    assert!(text(&by_flag.stdout).starts_with("allowed (ok)"));
    let by_env = run(&check, Some(ADMIN));
    assert_eq!(by_env.status.code(), Some(0), "{}", text(&by_env.stderr));

    // notify gets through to the relay, which has no webhook here (503).
    let notify = ["notify", "--category", "cli", "hello"];
    let refused = run(&notify, None);
    assert!(
        text(&refused.stderr).contains("Unauthorized (401)"),
        "{}",
        text(&refused.stderr)
    );
    let through = run(&notify, Some(CHECK));
    assert_eq!(through.status.code(), Some(2));
    assert!(
        text(&through.stderr).contains("No Slack webhook configured (503)"),
        "{}",
        text(&through.stderr)
    );
}

/// An envoyproxy/ratelimit YAML config (which has no `[server.auth]`)
/// served with `--check-token` (a `${VAR}`) and `--admin-token` (a `file:`).
fn yaml_protected(name: &str) -> Served {
    yaml_protected_on(name, &["--http", "127.0.0.1:0"])
}

/// [`yaml_protected`] listening as `listen` says (`--http`, `--grpc`).
fn yaml_protected_on(name: &str, listen: &[&str]) -> Served {
    let token_file = write_config(&format!("auth-{name}-admin-token"), &format!("{ADMIN}\n"));
    let config = write_config(
        &format!("auth-{name}.yaml"),
        "domain: notifications\ndescriptors:\n  - key: category\n    rate_limit:\n      unit: hour\n      requests_per_unit: 10\n",
    );
    let admin = format!("file:{}", token_file.display());
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--check-token",
        "${LIMITREE_TEST_CHECK}",
        "--admin-token",
        &admin,
    ];
    args.extend_from_slice(listen);
    Served::start_with_env(&args, &[("LIMITREE_TEST_CHECK", CHECK)])
}

/// Tokens from the flags count as auth for the warning about an exposed
/// server: none is logged.
#[test]
fn an_exposed_yaml_config_with_token_flags_does_not_warn() {
    let served = yaml_protected_on(
        "yaml-exposed",
        &["--http", "0.0.0.0:0", "--grpc", "0.0.0.0:0"],
    );
    assert!(
        served
            .early
            .iter()
            .all(|l| !l.contains("without API tokens")),
        "{:#?}",
        served.early
    );
    // The warning shows in this log when it is given: see
    // an_exposed_server_without_tokens_warns_once.
    assert!(!served.early.is_empty());
}

/// With a YAML config, the token flags turn auth on: both scopes over HTTP
/// with no, a wrong, a check and an admin token, health still open.
#[rstest]
#[case::envoy_bridge(Method::POST, "/json", "check", 200)]
// Let through, then refused: a domain tree takes a list of descriptors.
#[case::check(Method::POST, "/v1/check", "check", 422)]
#[case::policy(Method::GET, "/v1/policy", "admin", 200)]
#[case::bucket(
    Method::GET,
    "/v1/buckets/notifications/category/category=auth",
    "admin",
    200
)]
#[case::healthz(Method::GET, "/healthz", "open", 200)]
#[tokio::test]
async fn token_flags_guard_a_yaml_config_over_http(
    #[case] method: Method,
    #[case] path: &str,
    #[case] scope: &str,
    #[case] through: u16,
) {
    let served = yaml_protected(&format!("yaml-{}", path.replace('/', "_")));
    let http = reqwest::Client::new();
    for sent in Sent::ALL {
        let response = send(&http, &served, &method, path, sent).await;
        let status = response.status().as_u16();
        let expected = match (scope, sent) {
            ("open", _) | ("check", Sent::Check | Sent::Admin) | ("admin", Sent::Admin) => through,
            ("admin", Sent::Check) => 403,
            _ => 401,
        };
        assert_eq!(status, expected, "{method} {path} with {sent:?}");
        if [401, 403].contains(&status) {
            assert_refusal(response, sent).await;
        }
    }
}

/// With a YAML config, `ShouldRateLimit` needs a token from the flags
/// (check or admin); refused calls charge nothing.
#[tokio::test]
async fn token_flags_guard_a_yaml_config_over_grpc() {
    let served = yaml_protected("yaml-grpc");
    let mut client = RateLimitServiceClient::new(channel(&served).await);
    for sent in Sent::ALL {
        let mut request = tonic::Request::new(RateLimitRequest {
            hits_addend: 1,
            ..rls_request()
        });
        if let Some(token) = sent.token() {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        match client.should_rate_limit(request).await {
            Ok(answer) => {
                assert!(matches!(sent, Sent::Check | Sent::Admin), "{sent:?}");
                assert_eq!(answer.into_inner().overall_code, Code::Ok as i32);
            }
            Err(status) => {
                assert!(
                    matches!(sent, Sent::Nothing | Sent::Wrong),
                    "{sent:?}: {status:?}"
                );
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{sent:?}");
            }
        }
    }
    // Two calls charged one each; the refused ones nothing.
    let bucket: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/buckets/notifications/category/category=auth",
            served.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bucket["used"], 2, "{bucket}");
}

/// With a TOML config the flags add to `[server.auth]`: its token and the
/// flag's both work, on their own scopes.
#[tokio::test]
async fn token_flags_add_to_server_auth() {
    const FLAG_CHECK: &str = "chk-from-the-flag-93c1";
    let config = write_config(
        "auth-flags-and-file.toml",
        "[server.auth]\ncheck = [\"${LIMITREE_TEST_CHECK}\"]\n",
    );
    let served = Served::start_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--check-token",
            "${LIMITREE_TEST_FLAG_CHECK}",
        ],
        &[
            ("LIMITREE_TEST_CHECK", CHECK),
            ("LIMITREE_TEST_FLAG_CHECK", FLAG_CHECK),
        ],
    );
    let http = reqwest::Client::new();
    let status = async |path: &str, token: &str| {
        let mut request = http.request(
            if path == "/v1/check" {
                Method::POST
            } else {
                Method::GET
            },
            format!("{}{path}", served.base),
        );
        if let Some(body) = body_for(path) {
            request = request.json(&body);
        }
        request
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("/v1/check", CHECK).await, 200, "the file's token");
    assert_eq!(
        status("/v1/check", FLAG_CHECK).await,
        200,
        "the flag's token"
    );
    assert_eq!(status("/v1/check", WRONG).await, 401);
    assert_eq!(status("/v1/policy", FLAG_CHECK).await, 403, "a check token");
}

/// A flag that names no token (a literal, an unset variable, a missing
/// file) stops `limitree serve` with exit 64, naming the flag, never the value.
#[rstest]
#[case::literal(&["--check-token", "s3cr3t-token"], "error: --check-token (value 1): a token must not be given on the command line")]
#[case::unset_variable(&["--admin-token", "${LIMITREE_TEST_UNSET_TOKEN}"], "error: --admin-token ${LIMITREE_TEST_UNSET_TOKEN}: ${LIMITREE_TEST_UNSET_TOKEN} is not set")]
#[case::missing_file(&["--check-token", "file:/nonexistent/limitree-token"], "error: --check-token file:/nonexistent/limitree-token: cannot read the token file /nonexistent/limitree-token")]
fn bad_token_flags_stop_the_server(#[case] flags: &[&str], #[case] expected: &str) {
    let config = write_config(
        "auth-bad-flags.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: hour\n      requests_per_unit: 1\n",
    );
    let out = Command::new(BIN)
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "off",
            "--config",
        ])
        .arg(&config)
        .args(flags)
        .env_remove("LIMITREE_TEST_UNSET_TOKEN")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}
