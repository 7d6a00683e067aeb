//! `POST /v1/notify` against a local mock Slack (wiremock on 127.0.0.1):
//! delivery, Slack's answers (200, 429, 5xx, refusals, slow), suppression and
//! digests, full queues, and the end-to-end run over the default policy.
//!
//! The limiter runs on a manual clock, so windows pass when a test says so;
//! pacing and retries are configured in milliseconds so the real HTTP
//! exchanges finish in a few seconds.

use std::sync::Arc;
use std::time::Duration;

use limitree::ManualClock;
use limitree_server::app::App;
use limitree_server::config::Config;
use rstest::rstest;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::policy::{CATEGORY, notifications_with};
use crate::support::poll::{SOON, eventually};
use crate::support::server::TestServer;
use crate::support::slack::{Recorder, hook_url, mock_slack, only_hook, slack_ok};

/// A relay whose default route is `${HOOK}` = the mock's `/hook`, with
/// `notify` extra lines in `[notify]` and `rest` after it (trees).
struct Relay {
    server: TestServer,
    clock: ManualClock,
    dir: tempfile::TempDir,
}

async fn relay(mock: &MockServer, notify: &str, rest: &str) -> Relay {
    let clock = ManualClock::new(1_700_000_000_000_000);
    relay_in(tempfile::tempdir().unwrap(), clock, mock, notify, rest).await
}

/// [`relay`] on a given data dir and clock (a restart keeps both).
async fn relay_in(
    dir: tempfile::TempDir,
    clock: ManualClock,
    mock: &MockServer,
    notify: &str,
    rest: &str,
) -> Relay {
    let text = format!(
        "[notify]\ndata_dir = {:?}\ndefault_webhook = \"${{HOOK}}\"\nfsync = false\n{notify}\n{rest}",
        dir.path().display().to_string()
    );
    let config = Config::from_toml_str(&text, "test.toml").expect("valid test config");
    let state = App::build(&config, Arc::new(clock.clone()), only_hook(hook_url(mock)))
        .expect("test app")
        .state;
    Relay {
        server: TestServer::with_state(state, &config).await,
        clock,
        dir,
    }
}

impl Relay {
    async fn post(&self, body: &Value) -> reqwest::Response {
        self.server
            .client
            .post(self.server.url("/v1/notify"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn notify(&self, category: &str, text: &str) -> reqwest::Response {
        self.post(&json!({"category": category, "text": text}))
            .await
    }

    async fn metrics(&self) -> String {
        let response = self
            .server
            .client
            .get(self.server.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    fn dead_letters(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("dead-letters.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn an_admitted_notification_reaches_slack_with_its_blocks() {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let relay = relay(&mock, "", "").await;

    let response = relay
        .server
        .client
        .post(relay.server.url("/v1/notify"))
        .header("x-request-id", "req-42")
        .json(&json!({
            "category": "errors",
            "text": "disk full",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*disk* full"}}],
            "attachments": [{"color": "#ff0000", "text": "sda1"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key("ratelimit-policy"));
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["allowed"], true);
    assert!(
        reply["id"].as_str().is_some_and(|id| id.len() == 36),
        "{reply}"
    );
    assert_eq!(reply["levels"][1]["bucket"], "category=errors");
    assert_eq!(reply["levels"][1]["remaining"], 9);

    eventually("the delivery", SOON, async || recorder.len() == 1).await;
    let body = recorder.hits.lock()[0].body.clone();
    assert_eq!(
        body,
        json!({
            "text": "disk full",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*disk* full"}}],
            "attachments": [{"color": "#ff0000", "text": "sda1"}],
        })
    );
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("limitree_notify_requests_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    // The mock's address is the webhook's URL: a secret.
    assert!(
        !metrics.contains(&mock.address().port().to_string()),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after_then_sent_again() {
    let recorder = Recorder::new(slack_ok());
    let mock = MockServer::start().await;
    let limited = Recorder::new(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "1")
            .set_body_string("rate_limited"),
    );
    Mock::given(method("POST"))
        .respond_with(limited.clone())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(recorder.clone())
        .mount(&mock)
        .await;
    let relay = relay(&mock, "", "").await;
    assert_eq!(relay.notify("errors", "once").await.status(), 202);

    eventually("the retry", SOON, async || recorder.len() == 1).await;
    let waited = recorder.hits.lock()[0].at - limited.hits.lock()[0].at;
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    let metrics = relay.metrics().await;
    for line in [
        "{webhook=\"default\",outcome=\"rate_limited\"} 1",
        "{webhook=\"default\",outcome=\"delivered\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let recorder = Recorder::new(slack_ok());
    let mock = MockServer::start().await;
    let failing = Recorder::new(ResponseTemplate::new(500).set_body_string("oops"));
    Mock::given(method("POST"))
        .respond_with(failing.clone())
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(recorder.clone())
        .mount(&mock)
        .await;
    let relay = relay(
        &mock,
        "backoff_initial = \"100ms\"\nbackoff_max = \"1s\"",
        "",
    )
    .await;
    assert_eq!(relay.notify("errors", "eventually").await.status(), 202);
    eventually("the third attempt", SOON, async || recorder.len() == 1).await;
    let failed = failing.hits.lock().clone();
    // Equal jitter: the first wait is 50–100ms, the second 100–200ms.
    assert!(failed[1].at - failed[0].at >= Duration::from_millis(50));
    assert!(recorder.hits.lock()[0].at - failed[1].at >= Duration::from_millis(100));
    assert!(relay.dead_letters().is_empty());
}

#[rstest]
#[case::invalid_payload(400, "invalid_payload")]
#[case::action_prohibited(403, "action_prohibited")]
#[case::no_service(404, "no_service")]
#[case::channel_not_found(404, "channel_not_found")]
#[case::channel_is_archived(410, "channel_is_archived")]
#[tokio::test]
async fn refusals_are_dead_lettered_with_their_reason(#[case] status: u16, #[case] reason: &str) {
    let recorder = Recorder::new(ResponseTemplate::new(status).set_body_string(reason));
    let mock = mock_slack(&recorder).await;
    let relay = relay(&mock, "", "").await;
    assert_eq!(relay.notify("errors", "doomed").await.status(), 202);

    eventually("the dead letter", SOON, async || {
        !relay.dead_letters().is_empty()
    })
    .await;
    let letters = relay.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["reason"], reason);
    assert_eq!(letters[0]["status"], status);
    assert_eq!(letters[0]["webhook"], "default");
    assert_eq!(letters[0]["notification"]["payload"]["text"], "doomed");
    // Sent once: the same answer would come again.
    assert_eq!(recorder.len(), 1);
    assert!(
        relay
            .metrics()
            .await
            .contains("{webhook=\"default\",outcome=\"dead_lettered\"} 1")
    );
}

#[tokio::test]
async fn slow_answers_time_out_and_are_dead_lettered_after_max_attempts() {
    let recorder = Recorder::new(slack_ok().set_delay(Duration::from_secs(2)));
    let mock = mock_slack(&recorder).await;
    let relay = relay(
        &mock,
        "timeout = \"100ms\"\nmax_attempts = 2\nbackoff_initial = \"10ms\"",
        "",
    )
    .await;
    assert_eq!(relay.notify("errors", "slow").await.status(), 202);

    eventually("the dead letter", SOON, async || {
        !relay.dead_letters().is_empty()
    })
    .await;
    let letter = &relay.dead_letters()[0];
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 2 failed attempts"),
        "{reason}"
    );
    assert!(reason.contains("timed out"), "{reason}");
    assert!(!reason.contains("127.0.0.1"), "the URL leaked: {reason}");
    assert_eq!(recorder.len(), 2);
}

#[tokio::test]
async fn without_a_webhook_notify_is_503_saying_how_to_configure_one() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(server.url("/v1/notify"))
        .json(&json!({"category": "errors", "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:limitree:problem:no-route");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("SLACK_WEBHOOK_URL"),
        "{problem}"
    );
}

#[rstest]
#[case::no_category(json!({"text": "x"}), "`category` is required")]
#[case::no_text(json!({"category": "c"}), "`text` is required")]
#[case::blocks_not_array(json!({"category": "c", "text": "x", "blocks": "b"}), "`blocks` must be an array")]
#[case::unknown_field(json!({"category": "c", "text": "x", "channel": "#x"}), "unknown field `channel`")]
#[tokio::test]
async fn invalid_bodies_are_422_problem_json(#[case] body: Value, #[case] needle: &str) {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let relay = relay(&mock, "", "").await;
    let response = relay.post(&body).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains(needle),
        "{problem}"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_and_charges_nothing() {
    // Slack holds every call for a while, so queued notifications stay queued.
    let recorder = Recorder::new(slack_ok().set_delay(Duration::from_secs(3)));
    let mock = mock_slack(&recorder).await;
    let relay = relay(&mock, "queue_capacity = 2\ndrain = \"10ms\"", "").await;
    assert_eq!(relay.notify("errors", "1").await.status(), 202);
    assert_eq!(relay.notify("errors", "2").await.status(), 202);
    let response = relay.notify("errors", "3").await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:limitree:problem:queue-full");
    assert!(!problem.to_string().contains("127.0.0.1"), "{problem}");
    // The refused one was not charged: the category still has 8 left.
    let check = relay.server.check("errors", 0).await;
    assert_eq!(check["levels"][1]["remaining"], 8);
    assert!(
        relay
            .metrics()
            .await
            .contains("limitree_notify_requests_total{outcome=\"queue_full\"} 1")
    );
}

/// Two per minute per category, and no global level.
fn short_policy() -> String {
    notifications_with(&[CATEGORY.limit(2).window("1m")])
}

#[tokio::test]
async fn suppressed_notifications_answer_429_and_come_back_as_one_digest() {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let relay = relay(
        &mock,
        "digest_interval = \"20ms\"\npace = \"10ms\"",
        &short_policy(),
    )
    .await;
    for i in 0..2 {
        assert_eq!(
            relay.notify("errors", &format!("ok {i}")).await.status(),
            202
        );
    }
    relay.clock.advance(Duration::from_secs(10));
    for i in 0..3 {
        let response = relay.notify("errors", &format!("lost {i}")).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "50");
        let reply: Value = response.json().await.unwrap();
        // The same body as a denied check.
        assert_eq!(reply["allowed"], false);
        assert_eq!(reply["reason"], "limited");
        assert_eq!(reply["retry_after_ms"], 50_000);
        assert_eq!(reply["levels"][0]["bucket"], "category=errors");
    }
    eventually("the two admitted", SOON, async || recorder.len() == 2).await;

    // Not before the window frees a place: no digest yet.
    relay.clock.advance(Duration::from_secs(40));
    // A real wait: the relay's digest task runs on tokio time and sends over
    // real sockets, so paused time would race its HTTP timeouts; 100 ms is
    // five digest intervals for a wrong digest to show up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.len(), 2);

    relay.clock.advance(Duration::from_secs(10));
    eventually("the digest", SOON, async || recorder.len() == 3).await;
    let digest = recorder.texts()[2].clone();
    assert!(
        digest.starts_with("3 `errors` notifications suppressed between "),
        "{digest}"
    );
    assert!(
        digest.contains("first: lost 0; then: lost 1; then: lost 2"),
        "{digest}"
    );
    // The digest was charged like a notification.
    let check = relay.server.check("errors", 0).await;
    assert_eq!(check["levels"][0]["remaining"], 1);
    // Real time, for a second digest to show up if one were sent (as above).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.len(), 3, "one digest only");
}

#[tokio::test]
async fn suppression_tallies_survive_a_graceful_restart() {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let settings = "digest_interval = \"20ms\"\npace = \"10ms\"";
    let relay = relay(&mock, settings, &short_policy()).await;
    for i in 0..4 {
        relay.notify("errors", &format!("n{i}")).await;
    }
    eventually("the two admitted", SOON, async || recorder.len() == 2).await;
    let Relay { server, clock, dir } = relay;
    server.stop().await.unwrap();

    let relay = relay_in(dir, clock, &mock, settings, &short_policy()).await;
    relay.clock.advance(Duration::from_secs(61));
    eventually("the digest", SOON, async || recorder.len() == 3).await;
    let digest = recorder.texts()[2].clone();
    assert!(digest.starts_with("2 `errors` notifications"), "{digest}");
    assert!(digest.contains("first: n2; then: n3"), "{digest}");
}

/// 200 notifications over 20 categories against the built-in policy (global
/// 100 per 30m, category 10 per 30m): exactly the 100 admitted reach Slack,
/// once each, paced; after the window, one digest per category tells of the
/// 5 suppressed.
#[tokio::test]
async fn end_to_end_200_over_20_categories_on_the_default_policy() {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let pace = Duration::from_millis(15);
    let relay = relay(
        &mock,
        "pace = \"15ms\"\nburst = 1\ndigest_interval = \"20ms\"",
        "",
    )
    .await;
    let mut admitted = Vec::new();
    let mut suppressed = 0;
    for i in 0..200 {
        let category = format!("cat-{:02}", i % 20);
        let text = format!("message {i} in {category}");
        let response = relay.notify(&category, &text).await;
        match response.status().as_u16() {
            202 => admitted.push(text),
            429 => suppressed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted.len(), 100);
    assert_eq!(suppressed, 100);

    eventually("the 100 admitted", SOON, async || recorder.len() >= 100).await;
    let mut texts = recorder.texts();
    texts.sort();
    admitted.sort();
    assert_eq!(texts, admitted, "exactly the admitted, once each");
    // Paced: one per 15ms (arrival gaps jitter a little around the send gaps).
    let hits = recorder.hits.lock().clone();
    let span = hits[99].at - hits[0].at;
    assert!(span >= pace * 99 * 9 / 10, "100 messages in {span:?}");
    // Arrival times at the mock jitter with scheduling (a late arrival makes
    // the next gap short); without pacing nearly every gap would be tiny.
    let short = hits
        .windows(2)
        .filter(|pair| pair[1].at - pair[0].at < pace / 3)
        .count();
    assert!(short <= 5, "{short} of 99 gaps under {:?}", pace / 3);

    // After the window, every category's digest comes, charged through the limiter.
    relay.clock.advance(Duration::from_secs(30 * 60));
    eventually("20 digests", SOON, async || recorder.len() >= 120).await;
    let digests: Vec<String> = recorder.texts().split_off(100);
    for c in 0..20 {
        let category = format!("cat-{c:02}");
        let mine: Vec<&String> = digests
            .iter()
            .filter(|d| d.contains(&format!("`{category}`")))
            .collect();
        assert_eq!(mine.len(), 1, "{category}: {digests:?}");
        assert!(mine[0].starts_with(&format!("5 `{category}` notifications suppressed")));
    }
    // Real time, for a 121st call to show up if one were sent (as above).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.len(), 120);
    let global = relay.server.check("x", 0).await;
    assert_eq!(global["levels"][0]["remaining"], 80);
}
