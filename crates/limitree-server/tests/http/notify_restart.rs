//! The relay across process lifetimes, with the real `limitree` binary: every
//! accepted (202) notification arrives after a SIGTERM with a full queue
//! (drained in part, the rest persisted and sent on the next start) and after
//! a SIGKILL (persisted before the 202; sent again on start).

use std::path::Path;
use std::process::Command;

use serde_json::json;
use wiremock::MockServer;

use crate::support::policy::{GLOBAL, notifications_with};
use crate::support::poll::{SOON, eventually};
use crate::support::served::{BIN, Served};
use crate::support::slack::{Recorder, hook_url, mock_slack, slack_ok};

/// `limitree serve --config CONFIG` with `HOOK` (the mock's URL) in its
/// environment.
fn serve(config: &Path, hook: &str) -> Served {
    Served::start_with_env(&["--config", config.to_str().unwrap()], &[("HOOK", hook)])
}

/// Writes `DIR/limitree.toml` (and returns its path): a relay with a small
/// queue and slow pacing, so the queue fills at once and is still full when
/// the signal comes, over `trees`.
fn relay_config(dir: &Path, trees: &str) -> std::path::PathBuf {
    let path = dir.join("limitree.toml");
    let text = format!(
        r#"
[server]
http = "127.0.0.1:0"
shutdown_grace = "5s"

[notify]
data_dir = {:?}
default_webhook = "${{HOOK}}"
queue_capacity = 8
pace = "250ms"
burst = 1
drain = "300ms"
fsync = false
{trees}
"#,
        dir.join("data").display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A global level of `limit` per minute, and no category level.
fn per_minute(limit: u64) -> String {
    notifications_with(&[GLOBAL.limit(limit).window("1m")])
}

/// Room for every notification a test sends.
fn roomy() -> String {
    per_minute(1000)
}

/// Posts until the queue answers 503; returns the accepted texts.
async fn fill(base: &str, run: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    for i in 0..50 {
        let text = format!("{run} message {i}");
        let response = client
            .post(format!("{base}/v1/notify"))
            .header("x-request-id", format!("{run}-{i}"))
            .json(&json!({"category": format!("c{}", i % 3), "text": text}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            202 => accepted.push(text),
            503 => return accepted,
            other => panic!("unexpected {other}"),
        }
    }
    panic!("the queue never filled");
}

async fn start_mock() -> (Recorder, MockServer, String) {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let hook = hook_url(&mock);
    (recorder, mock, hook)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_full_queue_loses_nothing_and_sends_nothing_twice() {
    let (recorder, _mock, hook) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = relay_config(dir.path(), &roomy());

    let mut first = serve(&config, &hook);
    let accepted = fill(&first.base, "term").await;
    assert!(accepted.len() >= 8, "{accepted:?}");
    first.signal("TERM");
    assert_eq!(first.wait().code(), Some(0));
    let before = recorder.len();
    assert!(
        before < accepted.len(),
        "the queue drained completely before the restart ({before}); the test proves nothing"
    );

    let second = serve(&config, &hook);
    eventually("every accepted notification", SOON, async || {
        accepted.iter().all(|t| recorder.counts().contains_key(t))
    })
    .await;
    let counts = recorder.counts();
    for text in &accepted {
        assert_eq!(counts[text], 1, "{text} arrived {} times", counts[text]);
    }
    assert_eq!(counts.len(), accepted.len());
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_accepted() {
    let (recorder, _mock, hook) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = relay_config(dir.path(), &roomy());

    let first = serve(&config, &hook);
    let accepted = fill(&first.base, "kill").await;
    first.signal("KILL");
    drop(first);

    let mut second = serve(&config, &hook);
    eventually("every accepted notification", SOON, async || {
        accepted.iter().all(|t| recorder.counts().contains_key(t))
    })
    .await;
    // Only a message in flight at the kill (one per webhook) may come twice.
    let counts = recorder.counts();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(duplicates <= 1, "{counts:?}");
    assert_eq!(counts.len(), accepted.len());

    // Delivery log lines carry the id of the request that caused them.
    second.signal("TERM");
    assert_eq!(second.wait().code(), Some(0));
    let lines: Vec<String> = second.lines.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request_id=kill-") && l.contains("delivered")),
        "no delivery line with its request id in {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&hook)),
        "the webhook URL was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_command_queues_and_reports_suppression() {
    let (recorder, _mock, hook) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(&relay_config(dir.path(), &per_minute(1)), &hook);
    let notify = |text: &str| {
        Command::new(BIN)
            .env_remove("SLACK_WEBHOOK_URL")
            .args([
                "notify",
                "--url",
                &served.base,
                "--category",
                "errors",
                text,
            ])
            .output()
            .unwrap()
    };
    let out = notify("hello from the cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("queued "), "{stdout}");

    let out = notify("one too many");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("suppressed (limited): retry in 1m"),
        "{stdout}"
    );

    eventually("the cli's message", SOON, async || {
        recorder.texts() == ["hello from the cli"]
    })
    .await;
    served.signal("TERM");
    assert_eq!(served.wait().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_exits_naming_the_holder() {
    let (_recorder, _mock, hook) = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = relay_config(dir.path(), &roomy());
    let first = serve(&config, &hook);
    let holder = first.pid();
    let lock = std::fs::read_to_string(dir.path().join("data").join("limitree.lock")).unwrap();
    assert_eq!(lock.trim(), holder.to_string());

    let second = Command::new(BIN)
        .env_remove("SLACK_WEBHOOK_URL")
        .args(["serve", "--grpc", "off", "--config"])
        .arg(&config)
        .env("HOOK", &hook)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    // 1: the config is valid (64 is for invalid ones); the data dir is taken.
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by another limitree (pid {holder})")),
        "{stderr}"
    );
    // The first one is untouched by the attempt.
    let health = reqwest::get(format!("{}/healthz", first.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Once the holder is gone (even killed), the dir is free again.
    first.signal("KILL");
    drop(first);
    let again = serve(&config, &hook);
    drop(again);
}
