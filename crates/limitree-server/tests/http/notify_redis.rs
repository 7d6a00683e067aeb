//! The relay's outbox in Redis (`RedisOutbox`), against a `redis-server` this
//! test binary starts on a free loopback port: what is appended survives a
//! crash and is sent again, `done` removes it, two relays sharing one Redis
//! deliver each notification once, one relay takes over what a crashed one
//! held, and dead letters are kept in their stream.

use std::sync::Arc;
use std::time::Duration;

use limitree::ManualClock;
use limitree_server::app::App;
use limitree_server::config::Config;
use limitree_server::notify::outbox::{DeadLetter, Kind, Notification, Outbox};
use limitree_server::notify::redis_outbox::{RedisOutbox, RedisOutboxConfig};
use limitree_server::notify::{OutboxSource, Relay, Submission, Submitted};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wiremock::MockServer;

use crate::redis_support::{standalone, unique_prefix};
use crate::support::policy::{CATEGORY, notifications_with};
use crate::support::poll::{SOON, eventually};
use crate::support::slack::{Recorder, hook_url, mock_slack, only_hook, slack_ok};

fn note(id: &str) -> Notification {
    Notification {
        id: id.to_owned(),
        kind: Kind::Message,
        tree: "notifications".to_owned(),
        category: "errors".to_owned(),
        payload: json!({"text": id}),
        request_id: None,
        accepted_at: 1,
    }
}

/// An outbox config on the shared test server with a fresh prefix and a
/// short lease, so a crashed instance's entries are taken over quickly.
fn config(prefix: &str) -> RedisOutboxConfig {
    RedisOutboxConfig::standalone(standalone().url(), prefix)
        .with_timeout(Duration::from_secs(5))
        .with_lease(Duration::from_millis(600), Duration::from_millis(150))
}

fn redis(args: &[&str]) -> String {
    standalone().command(args)
}

fn ids(pending: &[Notification]) -> Vec<&str> {
    pending.iter().map(|n| n.id.as_str()).collect()
}

#[tokio::test]
async fn appended_entries_survive_a_crash_and_done_removes_them() {
    let prefix = unique_prefix("outbox");
    let a = RedisOutbox::connect(config(&prefix)).await.unwrap();
    let stream = a.keys().outbox.clone();
    assert_eq!(stream, format!("{{{prefix}:notify}}:outbox"));
    for id in ["a", "b", "c"] {
        a.append(note(id)).await.unwrap();
    }
    a.done("b".to_owned()).await.unwrap();
    assert_eq!(redis(&["XLEN", &stream]), "2");
    // A crash: dropped without `done` or `release`; its lease runs out.
    drop(a);

    let b = RedisOutbox::connect(config(&prefix)).await.unwrap();
    let mut taken = b.pending();
    if taken.is_empty() {
        // Redis expires the lease on its own clock: real time.
        taken = eventually("a take-over", Duration::from_secs(10), async || {
            let taken = b.upkeep(true).await.unwrap();
            (!taken.is_empty()).then_some(taken)
        })
        .await;
    }
    assert_eq!(ids(&taken), ["a", "c"]);
    assert_eq!(taken[0], note("a"));
    // Taken over once: the dead consumer is gone.
    assert!(b.upkeep(true).await.unwrap().is_empty());
    let consumers = redis(&["XINFO", "CONSUMERS", &stream, "relay"]);
    assert_eq!(consumers.lines().count(), 1, "{consumers}");
    assert!(consumers.contains(b.consumer()), "{consumers}");

    for id in ["a", "c"] {
        b.done(id.to_owned()).await.unwrap();
    }
    assert_eq!(redis(&["XLEN", &stream]), "0");
    b.release().await.unwrap();
    let c = RedisOutbox::connect(config(&prefix)).await.unwrap();
    assert!(c.pending().is_empty());
}

#[tokio::test]
async fn a_live_instance_keeps_its_entries_and_a_released_one_hands_them_over_at_once() {
    let prefix = unique_prefix("release");
    // A long lease: only `release` can hand the entries over in this test.
    let long = |p: &str| config(p).with_lease(Duration::from_secs(60), Duration::from_secs(20));
    let a = RedisOutbox::connect(long(&prefix)).await.unwrap();
    a.append(note("x")).await.unwrap();

    let b = RedisOutbox::connect(long(&prefix)).await.unwrap();
    assert!(b.pending().is_empty(), "a live instance's entry was taken");
    assert!(b.upkeep(true).await.unwrap().is_empty());

    a.release().await.unwrap();
    let taken = b.upkeep(true).await.unwrap();
    assert_eq!(ids(&taken), ["x"]);
    // `done` from the new holder removes it.
    b.done("x".to_owned()).await.unwrap();
    assert_eq!(redis(&["XLEN", &b.keys().outbox]), "0");
}

#[tokio::test]
async fn dead_letters_are_kept_in_a_capped_stream() {
    let prefix = unique_prefix("dead");
    let outbox = RedisOutbox::connect(config(&prefix).with_dead_letter_max(5))
        .await
        .unwrap();
    let dead = outbox.keys().dead.clone();
    assert_eq!(dead, format!("{{{prefix}:notify}}:dead"));
    for i in 0..300 {
        let id = format!("n{i}");
        outbox.append(note(&id)).await.unwrap();
        outbox
            .dead_letter(DeadLetter {
                dead_at: 2,
                reason: "invalid_payload".to_owned(),
                status: Some(400),
                attempts: 1,
                webhook: "default".to_owned(),
                notification: note(&id),
            })
            .await
            .unwrap();
        outbox.done(id).await.unwrap();
    }
    assert_eq!(redis(&["XLEN", &outbox.keys().outbox]), "0");
    // `MAXLEN ~` trims whole nodes: about 5, never all 300.
    let kept: usize = redis(&["XLEN", &dead]).parse().unwrap();
    assert!((5..300).contains(&kept), "{kept} dead letters kept");
    let last = redis(&["XREVRANGE", &dead, "+", "-", "COUNT", "1"]);
    let json = last.split_once("letter ").unwrap().1;
    let letter: DeadLetter = serde_json::from_str(json).unwrap();
    assert_eq!(letter.reason, "invalid_payload");
    assert_eq!(letter.notification.id, "n299");
}

#[tokio::test]
async fn digest_tallies_saved_at_shutdown_are_taken_by_the_next_start() {
    let prefix = unique_prefix("digests");
    let a = RedisOutbox::connect(config(&prefix)).await.unwrap();
    assert!(a.take_digests().is_empty());
    let saved: Vec<limitree_server::notify::tally::Saved> = serde_json::from_value(json!([{
        "tree": "notifications", "category": "errors", "due": 3,
        "tally": {"count": 4, "first_at": 1, "last_at": 2, "samples": ["x"], "request_id": null}
    }]))
    .unwrap();
    a.save_digests(saved.clone()).await.unwrap();
    let b = RedisOutbox::connect(config(&prefix)).await.unwrap();
    assert_eq!(b.take_digests(), saved);
    let c = RedisOutbox::connect(config(&prefix)).await.unwrap();
    assert!(c.take_digests().is_empty());
}

/// A relay (no HTTP) whose default route is `hook`, on the built-in policy
/// raised so nothing is suppressed, with its outbox in Redis under `prefix`.
struct RedisRelay {
    relay: Relay,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl RedisRelay {
    async fn start(prefix: &str, hook: String, pace: &str) -> RedisRelay {
        let text = format!(
            r#"
[notify]
default_webhook = "${{HOOK}}"
pace = "{pace}"
burst = 1
drain = "100ms"
timeout = "30s"
{}"#,
            notifications_with(&[CATEGORY.limit(100_000)])
        );
        let config = Config::from_toml_str(&text, "test.toml").expect("valid test config");
        let clock = ManualClock::new(1_700_000_000_000_000);
        let state = App::build(&config, Arc::new(clock), only_hook(hook))
            .expect("test app")
            .state;
        let outbox = RedisOutbox::connect(config_for_relay(prefix))
            .await
            .unwrap();
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        state
            .notify
            .use_outbox(OutboxSource::Given(Arc::new(outbox)));
        state.notify.start(&tracker, &cancel).unwrap();
        RedisRelay {
            relay: state.notify,
            tracker,
            cancel,
        }
    }

    async fn submit(&self, text: &str) {
        let submitted = self
            .relay
            .submit(
                Submission {
                    tree: None,
                    category: "errors".to_owned(),
                    payload: json!({"text": text}),
                },
                None,
            )
            .await
            .unwrap();
        assert!(matches!(submitted, Submitted::Accepted { .. }));
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn config_for_relay(prefix: &str) -> RedisOutboxConfig {
    config(prefix).with_lease(Duration::from_millis(1000), Duration::from_millis(200))
}

#[tokio::test]
async fn two_relays_on_one_redis_deliver_each_notification_once() {
    let recorder = Recorder::new(slack_ok());
    let mock = mock_slack(&recorder).await;
    let hook = hook_url(&mock);
    let prefix = unique_prefix("two");
    let one = RedisRelay::start(&prefix, hook.clone(), "10ms").await;
    let two = RedisRelay::start(&prefix, hook, "10ms").await;

    for i in 0..20 {
        let relay = if i % 2 == 0 { &one } else { &two };
        relay.submit(&format!("m{i}")).await;
    }
    eventually("20 deliveries", SOON, async || recorder.len() >= 20).await;
    // Past a lease and several upkeeps: neither takes the other's work. A
    // real wait: the leases expire in redis-server, on its own clock, which
    // paused tokio time cannot move; nor is there a condition to poll for,
    // as what is checked is that nothing more happens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counts = recorder.counts();
    assert_eq!(counts.len(), 20, "{counts:?}");
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");

    one.stop().await;
    two.stop().await;
    let stream = format!("{{{prefix}:notify}}:outbox");
    assert_eq!(redis(&["XLEN", &stream]), "0");
    // Both released their leases at shutdown.
    assert_eq!(
        redis(&["KEYS", &format!("{{{prefix}:notify}}:alive:*")]),
        ""
    );
}

#[test]
fn a_relay_takes_over_what_a_crashed_one_held() {
    // The crashed relay's webhook never answers in time, so what it accepted
    // is still pending when it dies with its runtime.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (prefix, slow, slow_recorder) = runtime.block_on(async {
        let recorder = Recorder::new(slack_ok().set_delay(Duration::from_secs(60)));
        let mock = mock_slack(&recorder).await;
        (unique_prefix("crash"), mock, recorder)
    });
    let crashing = tokio::runtime::Runtime::new().unwrap();
    crashing.block_on(async {
        let relay = RedisRelay::start(&prefix, hook_url(&slow), "10ms").await;
        for i in 0..5 {
            relay.submit(&format!("c{i}")).await;
        }
        // A crash: nothing is stopped, released or marked done; the tasks
        // die with the runtime below.
        drop(relay);
    });
    runtime.block_on(async {
        eventually("the first delivery attempt", SOON, async || {
            !slow_recorder.is_empty()
        })
        .await;
    });
    crashing.shutdown_background();

    runtime.block_on(async {
        let recorder = Recorder::new(slack_ok());
        let mock: MockServer = mock_slack(&recorder).await;
        let survivor = RedisRelay::start(&prefix, hook_url(&mock), "10ms").await;
        eventually("the crashed relay's notifications", SOON, async || {
            recorder.len() >= 5
        })
        .await;
        let counts = recorder.counts();
        assert_eq!(
            counts.keys().collect::<Vec<_>>(),
            ["c0", "c1", "c2", "c3", "c4"]
        );
        survivor.stop().await;
        assert_eq!(
            redis(&["XLEN", &format!("{{{prefix}:notify}}:outbox")]),
            "0"
        );
        drop(slow);
    });
}

/// On a Cluster every key is in the `{P:notify}` slot, so the scripts (which
/// also touch other consumers' lease keys) run there.
#[tokio::test]
async fn take_over_works_on_a_cluster() {
    let cluster = crate::redis_support::cluster();
    let prefix = unique_prefix("cluster");
    let config = || {
        RedisOutboxConfig::cluster(cluster.urls(), prefix.clone())
            .with_timeout(Duration::from_secs(5))
            .with_lease(Duration::from_millis(600), Duration::from_millis(150))
    };
    let a = RedisOutbox::connect(config()).await.unwrap();
    a.append(note("k")).await.unwrap();
    a.dead_letter(DeadLetter {
        dead_at: 2,
        reason: "no_service".to_owned(),
        status: Some(404),
        attempts: 1,
        webhook: "default".to_owned(),
        notification: note("k0"),
    })
    .await
    .unwrap();
    drop(a);

    let b = RedisOutbox::connect(config()).await.unwrap();
    let mut taken = b.pending();
    if taken.is_empty() {
        // Redis expires the lease on its own clock: real time.
        taken = eventually("a take-over", Duration::from_secs(10), async || {
            let taken = b.upkeep(true).await.unwrap();
            (!taken.is_empty()).then_some(taken)
        })
        .await;
    }
    assert_eq!(ids(&taken), ["k"]);
    b.done("k".to_owned()).await.unwrap();
    let node = cluster.node_for(&b.keys().outbox);
    assert_eq!(node.command(&["XLEN", &b.keys().outbox]), "0");
    assert_eq!(node.command(&["XLEN", &b.keys().dead]), "1");
}
