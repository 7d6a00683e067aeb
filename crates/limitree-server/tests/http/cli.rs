//! The `limitree` binary itself: `serve`, `check`, `config check`, signals.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::support::free_port;
use crate::support::served::{BIN, Served, text, write_config};

#[test]
fn check_exit_codes_follow_the_decision_and_sigterm_exits_zero() {
    let mut served = Served::start(&["--http", "127.0.0.1:0"]);
    for i in 1..=10 {
        let out = served.check(&["category=errors"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "check {i}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).starts_with("allowed (ok)"),
            "{}",
            text(&out.stdout)
        );
    }
    let denied = served.check(&["category=errors"]);
    assert_eq!(denied.status.code(), Some(1));
    let stdout = text(&denied.stdout);
    assert!(
        stdout.starts_with("limited (limited): retry in 30m"),
        "{stdout}"
    );
    assert!(stdout.contains("category=errors"), "{stdout}");

    let json = served.check(&["--json", "--cost", "0", "category=errors"]);
    let reply: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(reply["levels"][0]["remaining"], 90);

    let problem = served.check(&["--tree", "nope", "category=errors"]);
    assert_eq!(problem.status.code(), Some(2));
    assert!(text(&problem.stderr).contains("tree `nope` is not defined"));

    let bad = served.check(&["category"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("write KEY=VALUE"),
        "{}",
        text(&bad.stderr)
    );

    // Request logs carry the request id and the check's tree and descriptors.
    let logged = served
        .lines
        .try_iter()
        .any(|l| l.contains("request_id=") && l.contains("descriptors="));
    assert!(logged, "no request log line with its span");

    let status = served.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_against_nothing_exits_two() {
    let port = free_port();
    let out = Command::new(BIN)
        .env_remove("SLACK_WEBHOOK_URL")
        .args(["check", "--url", &format!("http://127.0.0.1:{port}"), "a=b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_logs_carry_the_request_span() {
    let mut served = Served::start(&["--http", "127.0.0.1:0", "--log-format", "json"]);
    let out = served.check(&["category=errors"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(served.terminate().code(), Some(0));
    let lines: Vec<String> = served.lines.try_iter().collect();
    let finished = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "request finished")
        .unwrap_or_else(|| panic!("no request line in {lines:?}"));
    assert!(finished["span"]["request_id"].is_string(), "{finished}");
    assert_eq!(finished["span"]["tree"], "notifications");
}

#[test]
fn config_check_prints_the_resolved_policy() {
    let path = write_config(
        "good.toml",
        r#"
[server]
http = "127.0.0.1:9999"
[store]
kind = "memory"
[[trees]]
name = "api"
[[trees.levels]]
name = "per_user"
by = ["user"]
limit = 20000
window = "1m"
algorithm = "sliding_log"
[[trees.levels.overrides]]
when = { user = "admin" }
limit = 50000
[[trees.levels]]
name = "smooth"
limit = 10
window = "1s"
algorithm = "gcra"
burst = 5
"#,
    );
    let out = Command::new(BIN)
        .env_remove("SLACK_WEBHOOK_URL")
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for needle in [
        "valid",
        "http 127.0.0.1:9999",
        "connections: max 10000, header_timeout 10s, idle_timeout 1m 15s, body_timeout 30s",
        "store: memory",
        "tree api",
        "level per_user: by user, sliding_log 20000 per 1m",
        "override user=admin",
        "gcra 10 per 1s (burst 5)",
        "warning: ",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in\n{stdout}");
    }
}

#[test]
fn config_check_lists_every_error_and_exits_64() {
    let path = write_config(
        "bad.toml",
        r#"
colour = "red"
[server]
shutdown_grace = "ten seconds"
[store]
kind = "redis"
[[trees]]
name = "api"
[[trees.levels]]
name = "per_user"
by = ["user"]
limit = 0
window = "1m"
algorithm = "sliding_log"
"#,
    );
    let out = Command::new(BIN)
        .env_remove("SLACK_WEBHOOK_URL")
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    let file = path.display().to_string();
    for needle in [
        "unknown top-level key `colour`",
        "[server] shutdown_grace",
        "[store] url: kind = \"redis\" needs",
        "tree `api`",
        "level `per_user`",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in\n{stderr}");
    }
    assert!(
        stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .all(|l| l.contains(&file))
    );

    // `serve` refuses the same file the same way.
    let serve = Command::new(BIN)
        .env_remove("SLACK_WEBHOOK_URL")
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(64));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    use std::io::Read;

    let mut served = Served::start(&["--http", "127.0.0.1:0"]);
    let addr = served.base.trim_start_matches("http://").to_owned();
    let body = r#"{"descriptors": {"category": "errors"}}"#;
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // `Expect: 100-continue` makes the server say when the handler has started
    // reading the body: from then on the request is in flight.
    write!(
        stream,
        "POST /v1/check HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert!(
        text(&interim).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        text(&interim)
    );

    served.signal("TERM");
    // The server logs its shutdown.
    served.wait_for_line("shutting down", Duration::from_secs(10));

    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":true"), "{response}");
    assert_eq!(served.wait().code(), Some(0));
}
