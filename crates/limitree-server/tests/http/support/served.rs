//! The `limitree` binary as a child process: [`Served`] runs `limitree serve`
//! and reads its log; [`write_config`] puts a config file where it can read it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::poll::eventually_blocking;

pub const BIN: &str = env!("CARGO_BIN_EXE_limitree");

/// A `limitree serve` child, killed on drop if still running.
#[derive(Debug)]
pub struct Served {
    child: Child,
    pub base: String,
    /// `127.0.0.1:PORT` of the gRPC listener (the harness asks for a free
    /// port unless the args say `--grpc`), if it listens.
    pub grpc: Option<String>,
    /// The stderr lines up to and including the listening line.
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
        let mut command = Command::new(BIN);
        command.arg("serve").args(args).args(default_grpc(args));
        Self::spawn(command, env)
    }

    /// [`Served::start`] with at most `limit` open file descriptors
    /// (`ulimit -n` in a shell that then becomes the server: no `unsafe`
    /// `pre_exec` needed).
    pub fn start_with_fd_limit(limit: u32, args: &[&str]) -> Served {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" serve \"$@\""))
            .arg(BIN)
            .args(args)
            .args(default_grpc(args));
        Self::spawn(command, &[])
    }

    fn spawn(mut command: Command, env: &[(&str, &str)]) -> Served {
        let cwd = tempfile::tempdir().unwrap();
        let mut child = command
            .env_remove("SLACK_WEBHOOK_URL")
            .current_dir(cwd.path())
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
        let mut early = Vec::new();
        let mut grpc = None;
        let base = {
            let mut next = log_lines(&lines, Duration::from_secs(20));
            loop {
                let line = next().expect("the server logs its listening line");
                early.push(line.clone());
                // Logged before the HTTP line.
                if let Some(at) = line.find("gRPC listening on ") {
                    grpc = Some(word(&line[at + "gRPC listening on ".len()..]));
                }
                if let Some(at) = line.find("listening on http://") {
                    break word(&line[at + "listening on ".len()..]);
                }
            }
        };
        Served {
            child,
            base,
            grpc,
            early,
            lines,
            _cwd: cwd,
        }
    }

    /// `limitree check --url BASE ARGS`.
    pub fn check(&self, args: &[&str]) -> Output {
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
        let child = &mut self.child;
        eventually_blocking("the exit after the signal", Duration::from_secs(15), || {
            child.try_wait().unwrap()
        })
    }

    /// Reads the log (past the listening line) until a line contains
    /// `needle`, for at most `within`; returns that line.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> String {
        let mut next = log_lines(&self.lines, within);
        loop {
            let line = next().unwrap_or_else(|e| panic!("no log line with {needle:?}: {e}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// The next line from `lines`, all of them within `within` from now.
fn log_lines(
    lines: &mpsc::Receiver<String>,
    within: Duration,
) -> impl FnMut() -> Result<String, mpsc::RecvTimeoutError> {
    let deadline = Instant::now() + within;
    move || lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Never the default 8081 (tests run side by side): a free port, unless the
/// args say `--grpc` themselves.
fn default_grpc(args: &[&str]) -> &'static [&'static str] {
    if args.contains(&"--grpc") {
        &[]
    } else {
        &["--grpc", "127.0.0.1:0"]
    }
}

/// The text up to the first blank or quote.
fn word(text: &str) -> String {
    let end = text
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// A child's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `text` to a file called `name` in this test run's directory.
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
