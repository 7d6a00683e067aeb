//! Hot policy reload against the real `limitree serve`: SIGHUP, a change of
//! the watched file and `POST /v1/reload`; counters kept across a new limit
//! for every algorithm on the memory store and on a real `redis-server`; an
//! invalid file rejected whole; a file rewritten 100 times in a second; a
//! removed level, a changed algorithm, settings that need a restart.

use std::path::Path;
use std::time::Duration;

use rstest::rstest;
use serde_json::{Value, json};

use crate::support::policy::{CATEGORY, GLOBAL, notifications_with};
use crate::support::poll::SOON;
use crate::support::served::{Served, write_config};

/// A check of `category` costing `cost` (0: a peek).
async fn check(client: &reqwest::Client, served: &Served, category: &str, cost: u64) -> Value {
    client
        .post(format!("{}/v1/check", served.base))
        .json(&json!({"descriptors": {"category": category}, "cost": cost}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The entry for level `name` in a check reply, if the reply has it.
fn level<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    reply["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
}

/// Writes `text` over `path` as an editor that saves atomically does: a new
/// file renamed over the old one.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn metrics(client: &reqwest::Client, served: &Served) -> String {
    client
        .get(format!("{}/metrics", served.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The store a case runs on: memory, or a fresh `redis-server` of its own.
enum Store {
    Memory,
    #[cfg(feature = "redis")]
    Redis(crate::redis_support::RedisServer),
}

impl Store {
    fn start(kind: &str) -> Store {
        match kind {
            "memory" => Store::Memory,
            #[cfg(feature = "redis")]
            "redis" => Store::Redis(crate::redis_support::RedisServer::start(&[])),
            other => panic!("no store {other} in this build"),
        }
    }

    /// The `[store]` section for it (a generous timeout: a loaded two-core
    /// machine runs these).
    fn section(&self) -> String {
        match self {
            Store::Memory => String::new(),
            #[cfg(feature = "redis")]
            Store::Redis(redis) => {
                format!("[store]\nurl = \"{}\"\ntimeout = \"5s\"\n", redis.url())
            }
        }
    }
}

/// SIGHUP with lower category and higher global limits: the counters stay.
/// Four checks used 4 of category 5 and global 10; the new limits are 3 and
/// 20. Every algorithm then reports the category over its new limit (nothing
/// admitted, nothing charged) and the global level with its count kept:
/// 16 left (gcra carries its debt over in units: the 4 units owed at 180 s
/// each are owed at the new 90 s each).
#[rstest]
#[case::sliding_log_memory("sliding_log", "memory", 16)]
#[case::sliding_window_memory("sliding_window", "memory", 16)]
#[case::gcra_memory("gcra", "memory", 16)]
#[case::fixed_window_memory("fixed_window", "memory", 16)]
#[cfg_attr(feature = "redis", case::sliding_log_redis("sliding_log", "redis", 16))]
#[cfg_attr(
    feature = "redis",
    case::sliding_window_redis("sliding_window", "redis", 16)
)]
#[cfg_attr(feature = "redis", case::gcra_redis("gcra", "redis", 16))]
#[cfg_attr(
    feature = "redis",
    case::fixed_window_redis("fixed_window", "redis", 16)
)]
#[tokio::test]
async fn sighup_applies_new_limits_and_keeps_counters(
    #[case] algorithm: &'static str,
    #[case] store: &str,
    #[case] global_left: u64,
) {
    let store = Store::start(store);
    let policy = |global: u64, category: u64| {
        format!(
            "{}{}",
            store.section(),
            notifications_with(&[
                GLOBAL.limit(global).algorithm(algorithm),
                CATEGORY.limit(category).algorithm(algorithm),
            ])
        )
    };
    let path = write_config(
        &format!("reload-sighup-{algorithm}-{}.toml", store.section().len()),
        &policy(10, 5),
    );
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(check(&client, &served, "errors", 1).await["allowed"], true);
    }

    replace_file(&path, &policy(20, 3));
    served.signal("HUP");
    // SIGHUP reloads (or finds that the file's watcher already did).
    served.wait_for_line("SIGHUP: ", SOON);

    let peek = check(&client, &served, "errors", 0).await;
    let category = level(&peek, "category").unwrap();
    assert_eq!(category["limit"], 3, "{peek}");
    assert_eq!(
        category["remaining"], 0,
        "4 used of a new limit of 3: {peek}"
    );
    let global = level(&peek, "global").unwrap();
    assert_eq!(global["limit"], 20, "{peek}");
    assert_eq!(global["remaining"], global_left, "{peek}");
    // Over the lowered limit: denied, and the denial charges nothing.
    let denied = check(&client, &served, "errors", 1).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(
        level(&denied, "global").unwrap()["remaining"],
        global_left,
        "{denied}"
    );
    // Another category has its own (fresh) bucket under the new limit.
    let other = check(&client, &served, "deploys", 1).await;
    assert_eq!(other["allowed"], true, "{other}");
    assert_eq!(level(&other, "category").unwrap()["remaining"], 2);
}

/// An invalid file is rejected whole: the old policy serves, every error is
/// logged as `config check` prints it, the stale state shows in the metrics
/// and `/readyz` (still 200), and a fixed file clears it.
#[tokio::test]
async fn an_invalid_change_keeps_the_old_policy_and_says_it_is_stale() {
    let valid = notifications_with(&[GLOBAL, CATEGORY.limit(5)]);
    let path = write_config("reload-invalid.toml", &valid);
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    assert_eq!(check(&client, &served, "errors", 1).await["allowed"], true);

    let invalid = valid.replace("limit = 5", "limit = \"5\"");
    replace_file(&path, &invalid);
    served.signal("HUP");
    // The message `limitree config check` prints for this file.
    let check_output = std::process::Command::new(crate::support::served::BIN)
        .args(["config", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = crate::support::served::text(&check_output.stderr);
    let message = printed
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("config check names the error: {printed}"));
    served.wait_for_line(message, SOON);
    served.wait_for_line("the reload is rejected and the running policy", SOON);

    let peek = check(&client, &served, "errors", 0).await;
    let category = level(&peek, "category").unwrap();
    assert_eq!(
        (category["limit"].clone(), category["remaining"].clone()),
        (json!(5), json!(4)),
        "the old policy serves, counters intact: {peek}"
    );
    let text = metrics(&client, &served).await;
    assert!(text.contains("limitree_policy_stale 1\n"), "{text}");
    // SIGHUP's, and perhaps the file watcher's before it.
    assert!(
        !text.contains("limitree_policy_reloads_total{result=\"error\"} 0\n")
            && text.contains("limitree_policy_reloads_total{result=\"error\"} "),
        "{text}"
    );
    let ready = client
        .get(format!("{}/readyz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["policy"]["stale"], true, "{ready}");
    let detail = ready["policy"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("policy: stale since ") && detail.contains("expected a whole number"),
        "{detail}"
    );

    // Fixed: POST /v1/reload puts it in force and clears the stale state.
    replace_file(&path, &notifications_with(&[GLOBAL, CATEGORY.limit(7)]));
    let reply = client
        .post(format!("{}/v1/reload", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["result"], "ok", "{reply}");
    let peek = check(&client, &served, "errors", 0).await;
    assert_eq!(level(&peek, "category").unwrap()["remaining"], 6, "{peek}");
    let text = metrics(&client, &served).await;
    assert!(text.contains("limitree_policy_stale 0\n"), "{text}");
    let hash = reply["policy_hash"].as_str().unwrap();
    assert!(
        text.contains(&format!("limitree_policy_info{{hash=\"{hash}\"}} 1\n")),
        "{text}"
    );
    let ready: Value = client
        .get(format!("{}/readyz", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["policy"]["stale"], false, "{ready}");
}

/// `POST /v1/reload`: an invalid file is 422 with every error, the running
/// policy kept; without a config file there is nothing to reload (409), and
/// SIGHUP says so in the log and the server keeps serving.
#[tokio::test]
async fn post_reload_answers_ok_the_errors_or_nothing_to_reload() {
    let path = write_config("reload-post.toml", &notifications_with(&[GLOBAL, CATEGORY]));
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    replace_file(&path, "[[trees]]\nname = \"notifications\"\n");
    let reply = client
        .post(format!("{}/v1/reload", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 422);
    let problem: Value = reply.json().await.unwrap();
    assert_eq!(problem["type"], "urn:limitree:problem:reload-invalid");
    assert!(
        problem["detail"].as_str().unwrap().contains("levels"),
        "{problem}"
    );
    assert_eq!(
        level(&check(&client, &served, "errors", 0).await, "category").unwrap()["limit"],
        10
    );
    // The status page's JSON says the policy is stale and why.
    let status = |client: reqwest::Client, base: String| async move {
        let status: Value = client
            .get(format!("{base}/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["policy"].clone()
    };
    let policy = status(client.clone(), served.base.clone()).await;
    assert_eq!(policy["last_reload"]["result"], "error", "{policy}");
    assert!(policy["stale_since_ms"].is_u64(), "{policy}");
    let stale_hash = policy["hash"].clone();

    // A valid file: 200, in force, and the status says so.
    replace_file(&path, &notifications_with(&[GLOBAL, CATEGORY.limit(7)]));
    let reply = client
        .post(format!("{}/v1/reload", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        level(&check(&client, &served, "errors", 0).await, "category").unwrap()["limit"],
        7
    );
    let policy = status(client.clone(), served.base.clone()).await;
    assert_eq!(policy["last_reload"]["result"], "ok", "{policy}");
    assert!(policy["stale_since_ms"].is_null(), "{policy}");
    assert_ne!(policy["hash"], stale_hash, "{policy}");

    let builtin = Served::start(&["--http", "127.0.0.1:0"]);
    let reply = client
        .post(format!("{}/v1/reload", builtin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
    builtin.signal("HUP");
    builtin.wait_for_line("nothing to reload; still serving", SOON);
    assert_eq!(check(&client, &builtin, "errors", 1).await["allowed"], true);
}

/// The file rewritten 100 times in about a second (atomic renames and plain
/// rewrites, which a reload may catch half-written) while checks run: every
/// answer is one version's (its two limits agree), the server never fails,
/// and the last version ends up in force by the file watcher alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_100_times_in_a_second_ends_on_the_last_version() {
    // Version v: global 1000 + v, category 500 + v.
    let version = |v: u64| notifications_with(&[GLOBAL.limit(1000 + v), CATEGORY.limit(500 + v)]);
    let path = write_config("reload-burst.toml", &version(0));
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    let checker = {
        let (client, base) = (client.clone(), served.base.clone());
        async move {
            let mut seen = Vec::new();
            for i in 0..300 {
                let reply: Value = client
                    .post(format!("{base}/v1/check"))
                    .json(&json!({"descriptors": {"category": format!("c{}", i % 7)}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                seen.push(reply);
            }
            seen
        }
    };
    let writer = async {
        let mut ticks = tokio::time::interval(Duration::from_millis(10));
        for v in 1..=100 {
            ticks.tick().await;
            if v % 2 == 0 {
                replace_file(&path, &version(v));
            } else {
                std::fs::write(&path, version(v)).unwrap();
            }
        }
    };
    let (seen, ()) = tokio::join!(checker, writer);
    for reply in &seen {
        assert_eq!(reply["reason"], "ok", "{reply}");
        let global = level(reply, "global").unwrap()["limit"].as_u64().unwrap();
        let category = level(reply, "category").unwrap()["limit"].as_u64().unwrap();
        assert_eq!(
            global - 1000,
            category - 500,
            "one version per answer: {reply}"
        );
        assert!(global - 1000 <= 100, "{reply}");
    }
    crate::support::poll::eventually("the last version in force", SOON, async || {
        let peek = check(&client, &served, "final", 0).await;
        let limit = level(&peek, "category").unwrap()["limit"].clone();
        if limit == 600 {
            Ok(())
        } else {
            Err(format!("category limit {limit}"))
        }
    })
    .await;
}

/// A removed level's state is dropped: added back, it starts fresh. A level
/// whose algorithm changed starts fresh; the unchanged one keeps its count.
/// A changed `[server]` setting is reported as needing a restart.
#[tokio::test]
async fn a_removed_level_and_a_changed_algorithm_start_fresh() {
    let both = notifications_with(&[GLOBAL, CATEGORY]);
    let path = write_config("reload-levels.toml", &both);
    let served = Served::start(&["--config", path.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let client = reqwest::Client::new();
    let reload = async || -> Value {
        client
            .post(format!("{}/v1/reload", served.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        check(&client, &served, "errors", 1).await;
    }

    // The file watcher may reload before the POST does: the log line of
    // whichever did says what happened to the levels.
    replace_file(&path, &notifications_with(&[GLOBAL]));
    assert_eq!(reload().await["result"], "ok");
    served.wait_for_line(
        "1 levels keep their counters, 0 start fresh, 1 dropped",
        SOON,
    );
    let peek = check(&client, &served, "errors", 0).await;
    assert!(level(&peek, "category").is_none(), "{peek}");
    assert_eq!(level(&peek, "global").unwrap()["remaining"], 97);

    replace_file(&path, &both);
    reload().await;
    let peek = check(&client, &served, "errors", 0).await;
    assert_eq!(level(&peek, "category").unwrap()["remaining"], 10, "{peek}");
    assert_eq!(level(&peek, "global").unwrap()["remaining"], 97, "{peek}");

    // Same limits, another algorithm for the category: it starts fresh.
    check(&client, &served, "errors", 1).await;
    replace_file(
        &path,
        &format!(
            "[server]\nmax_body_bytes = 1000\n{}",
            notifications_with(&[GLOBAL, CATEGORY.algorithm("fixed_window")])
        ),
    );
    let reply = reload().await;
    served.wait_for_line(
        "1 levels keep their counters, 1 start fresh, 1 dropped",
        SOON,
    );
    assert_eq!(
        reply["needs_restart"],
        json!(["[server] max_body_bytes changed: needs a restart; kept 65536"]),
        "{reply}"
    );
    let peek = check(&client, &served, "errors", 0).await;
    assert_eq!(level(&peek, "category").unwrap()["remaining"], 10, "{peek}");
    assert_eq!(level(&peek, "global").unwrap()["remaining"], 96, "{peek}");
}
