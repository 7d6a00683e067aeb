//! The `limitree` binary itself: `serve`, `check`, `config check`, signals.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_limitree");

/// A `limitree serve` child, killed on drop if still running.
pub struct Served {
    child: Child,
    pub base: String,
    /// The stderr lines up to and including the listening line.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub early: Vec<String>,
    /// Every stderr line after the listening line.
    pub lines: mpsc::Receiver<String>,
    /// Its working directory: whatever a relative path (such as the default
    /// `./limitree-data`) would create lands here, not in the crate.
    _cwd: tempfile::TempDir,
}

impl Served {
    /// `limitree serve ARGS` in a fresh working directory and without the
    /// developer's `SLACK_WEBHOOK_URL` (so no relay, and no data dir, starts).
    pub fn start(args: &[&str]) -> Served {
        Self::start_with_env(args, &[])
    }

    /// [`Served::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Served {
        let cwd = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .env_remove("SLACK_WEBHOOK_URL")
            .current_dir(cwd.path())
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            // `--redis` may come from the environment: not from the tester's.
            .env_remove("LIMITREE_REDIS_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Drains stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut early = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("the server logs its listening line");
            early.push(line.clone());
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                break rest[..end].to_owned();
            }
        };
        Served {
            child,
            base,
            early,
            lines,
            _cwd: cwd,
        }
    }

    fn check(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .env_remove("SLACK_WEBHOOK_URL")
            .args(["check", "--url", &self.base])
            .args(args)
            .output()
            .unwrap()
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (`TERM`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    /// Waits (bounded) for the child to exit after a signal.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 15s of the signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

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
    // Bind and drop a port so nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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

pub fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("limitree-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
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

    Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = served
            .lines
            .recv_timeout(left)
            .expect("the server logs its shutdown");
        if line.contains("shutting down") {
            break;
        }
    }

    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":true"), "{response}");
    assert_eq!(served.wait().code(), Some(0));
}
