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

    // At the default level a request that goes well logs nothing: the access
    // log is off unless `RUST_LOG` names `limitree::access`.
    let access: Vec<String> = served
        .lines
        .try_iter()
        .filter(|l| l.contains("request finished"))
        .collect();
    assert!(access.is_empty(), "{access:?}");

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
fn a_warning_carries_the_request_span() {
    // One bucket per level: the second category overflows, and the store warns
    // while deciding that request.
    let config = write_config(
        "one-bucket.toml",
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "30m"
max_buckets = 1
"#,
    );
    let mut served = Served::start(&[
        "--http",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    for category in ["category=a", "category=b"] {
        let out = served.check(&[category]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(served.terminate().code(), Some(0));
    let lines: Vec<String> = served.lines.try_iter().collect();
    let warning = lines
        .iter()
        .find(|l| l.contains("WARN") && l.contains("max_buckets"))
        .unwrap_or_else(|| panic!("no warning in {lines:?}"));
    assert!(
        warning.contains("request_id=") && warning.contains(r#"descriptors={"category": "b"}"#),
        "{warning}"
    );
}

#[test]
fn json_logs_carry_the_request_span() {
    // The access log, turned on by naming its target.
    let mut served = Served::start_with_env(
        &["--http", "127.0.0.1:0", "--log-format", "json"],
        &[("RUST_LOG", "info,limitree::access=info")],
    );
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
[[trees]]
name = "notifications"
[[trees.levels]]
name = "global"
limit = 100
window = "30m"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "30m"
shares = { errors = 4, warnings = 4 }
[[trees]]
name = "teams"
[[trees.levels]]
name = "team"
by = ["team"]
limit = 100
window = "30m"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "30m"
shares = { errors = 4, warnings = 6 }
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
        "override category=errors: sliding_log 10 per 30m, guaranteed 4 of the level above",
        "shares of level global: 8 reserved for 2 values of level category, pool 92",
        "shares of level team (each bucket by team, split alike): 10 reserved for 2 values of \
         level category, pool 90",
        "warning: ",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in\n{stdout}");
    }
}

#[test]
fn config_check_says_which_variables_are_unset() {
    let path = write_config(
        "routes.toml",
        "[notify]\ntree = \"n\"\n[notify.routes]\nerrors = \"${LT_TEST_ERRORS_HOOK}\"\ndeploys = \"${LT_TEST_DEPLOYS_HOOK}\"\n[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"all\"\nlimit = 100\nwindow = \"30m\"\n[[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n",
    );
    let out = Command::new(BIN)
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("LT_TEST_ERRORS_HOOK")
        .env("LT_TEST_DEPLOYS_HOOK", "https://hooks.example/secret-path")
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for needle in [
        "default route none (SLACK_WEBHOOK_URL is not set)",
        "routes [deploys, errors]",
        "notify tree: n (levels: all (global); category by category)",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in\n{stdout}");
    }
    let warning = format!(
        "warning: {}: [notify.routes] errors refers to ${{LT_TEST_ERRORS_HOOK}}, which is not set here",
        path.display()
    );
    assert!(stdout.contains(&warning), "{warning:?} not in\n{stdout}");
    assert!(!stdout.contains("LT_TEST_DEPLOYS_HOOK}, which"), "{stdout}");
    assert!(!stdout.contains("secret-path"), "{stdout}");

    let out = Command::new(BIN)
        .env("SLACK_WEBHOOK_URL", "https://hooks.example/secret-path")
        .args(["config", "check"])
        .arg(write_config("plain.toml", ""))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("default route from $SLACK_WEBHOOK_URL"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret-path"), "{stdout}");
}

#[test]
fn config_check_names_line_key_and_fix() {
    let path = write_config(
        "typed.toml",
        "[server]\nmax_body_bytes = \"1s\"\n[notify]\ntree = \"nope\"\n[[trees]]\nname = \"notifications\"\n[[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = \"10\"\nwindow = \"30m\"\n",
    );
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    let file = path.display().to_string();
    for needle in [
        format!(
            "error: {file}: line 2, column 18: [server] max_body_bytes: expected a whole number, found the string \"1s\""
        ),
        format!(
            "error: {file}: line 10, column 9: trees[notifications].levels[category].limit: expected a whole number, found the string \"10\"; remove the quotes: limit = 10"
        ),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in\n{stderr}");
    }

    let latin1 = write_config("latin1.toml", "");
    std::fs::write(&latin1, b"[server]\nhttp = \"caf\xe9\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&latin1)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("the file is not UTF-8: line 2, byte 12 of the line (byte offset 20 in the file) is 0xe9"),
        "{}",
        text(&out.stderr)
    );
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
        "trees[api].levels[per_user].limit: `limit` is 0",
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
