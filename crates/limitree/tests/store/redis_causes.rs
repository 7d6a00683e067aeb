//! Redis errors that name their cause, against real servers: a refused
//! connection (with the address), a wrong or missing password (never printed),
//! TLS towards a plain port, LOADING, CLUSTERDOWN; and an outage logged once
//! when it starts and once when it ends.

#![expect(
    clippy::disallowed_methods,
    reason = "these tests time real calls to real redis-server processes"
)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use limitree::store::fallback::{FallbackStore, OnError};
use limitree::store::redis::{RedisConfig, RedisStore};
use limitree::{ManualClock, MemoryStore, Mode, Policy, Reason, Store, StoreError};

use crate::support::T0;
use crate::support::redis::eventually::{eventually, eventually_async};
use crate::support::redis::{self as support};

const TIMEOUT: Duration = Duration::from_millis(100);

/// A loopback port nothing listens on.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a decision and a readiness check on a store for `config` fail with.
async fn errors_of(config: RedisConfig) -> Vec<StoreError> {
    let policy = Policy::default_notifications();
    let chain = policy.trees()[0].chain(&[("category", "x")], 1).unwrap();
    let mut errors = vec![RedisStore::connect(config.clone()).await.unwrap_err()];
    let store = RedisStore::lazy(config).unwrap();
    errors.push(store.check_ready().await.unwrap_err());
    errors.push(store.decide(&chain, Mode::Commit).await.unwrap_err());
    errors
}

fn assert_all(errors: &[StoreError], what: &str, check: impl Fn(&str) -> bool) {
    for e in errors {
        let text = e.to_string();
        assert!(check(&text), "{what}: {text}");
    }
}

#[tokio::test]
async fn a_refused_connection_says_so_with_the_address_and_fast() {
    let port = unused_port();
    let started = Instant::now();
    let errors = errors_of(
        RedisConfig::standalone(format!("redis://127.0.0.1:{port}")).with_timeout(TIMEOUT),
    )
    .await;
    let expected = format!("store unavailable: connection refused at 127.0.0.1:{port}");
    assert_all(&errors, "refused", |t| t == expected);
    // Three calls, none waiting for its deadline.
    assert!(started.elapsed() < TIMEOUT * 2, "{:?}", started.elapsed());

    let errors = errors_of(
        RedisConfig::cluster([format!("redis://127.0.0.1:{port}")]).with_timeout(TIMEOUT),
    )
    .await;
    assert_all(&errors, "cluster refused", |t| {
        t == format!(
            "store unavailable: connection refused at a node of the cluster 127.0.0.1:{port}"
        )
    });
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_an_authentication_failure() {
    let server = support::RedisServer::start(&[]);
    server.command(&["CONFIG", "SET", "requirepass", "s3cret"]);
    let port = server.port();
    for url in [
        format!("redis://:wrong-pw@127.0.0.1:{port}"),
        format!("redis://someone:wrong-pw@127.0.0.1:{port}"),
    ] {
        let errors = errors_of(RedisConfig::standalone(url).with_timeout(TIMEOUT)).await;
        assert_all(&errors, "wrong password", |t| {
            t == format!(
                "store unavailable: authentication failed at 127.0.0.1:{port}: \
                 Redis refused the configured password (WRONGPASS)"
            )
        });
    }
    // No password: the connection is made, every command is refused.
    let store =
        RedisStore::lazy(RedisConfig::standalone(server.url()).with_timeout(TIMEOUT)).unwrap();
    let e = store.check_ready().await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "store unavailable: authentication failed at 127.0.0.1:{port}: \
             Redis requires a password and none is configured (NOAUTH)"
        )
    );
}

/// `rediss://` towards a plain port: the handshake never completes.
#[tokio::test]
async fn tls_towards_a_plain_port_names_the_handshake() {
    let port = support::standalone().port();
    let errors = errors_of(
        RedisConfig::standalone(format!("rediss://127.0.0.1:{port}")).with_timeout(TIMEOUT),
    )
    .await;
    // `no connection to 127.0.0.1:PORT within 90 ms: TCP connect or TLS
    // handshake timed out (is that port speaking TLS?)`, or on a loaded
    // machine the same, past the call's deadline.
    assert_all(&errors, "tls", |t| {
        t.contains(&format!("127.0.0.1:{port}")) && t.contains("TLS handshake")
    });

    // Two calls at once: one waits on the other's attempt past its deadline,
    // and reports why the last attempt failed.
    let store = RedisStore::lazy(
        RedisConfig::standalone(format!("rediss://127.0.0.1:{port}")).with_timeout(TIMEOUT),
    )
    .unwrap();
    assert!(store.check_ready().await.is_err());
    let (a, b) = tokio::join!(store.check_ready(), store.check_ready());
    let errors = [a.unwrap_err(), b.unwrap_err()];
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, StoreError::TimeoutConnecting { .. })),
        "{errors:?}"
    );
    assert_all(&errors, "tls, waiting", |t| {
        t.contains(&format!("127.0.0.1:{port}")) && t.contains("TLS handshake")
    });
}

/// A server loading its dataset (DEBUG RELOAD, slowed per key) answers
/// LOADING.
#[tokio::test]
async fn a_loading_redis_says_loading() {
    let server = support::RedisServer::start(&[
        "--enable-debug-command",
        "yes",
        "--loading-process-events-interval-bytes",
        "1024",
    ]);
    server.command(&["DEBUG", "POPULATE", "20000"]);
    // 20,000 keys at 100 µs each: two seconds of loading.
    server.command(&["CONFIG", "SET", "key-load-delay", "100"]);
    let store = RedisStore::connect(RedisConfig::standalone(server.url()).with_timeout(TIMEOUT))
        .await
        .unwrap();
    let port = server.port();
    let reload = std::thread::spawn(move || support::command(port, &["DEBUG", "RELOAD"]));
    let seen = eventually_async(Duration::from_secs(2), Duration::from_millis(5), || async {
        match store.check_ready().await {
            Err(e) if e.to_string().contains("LOADING") => Ok(e.to_string()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        format!(
            "store unavailable: Redis at 127.0.0.1:{port} is loading its dataset into memory (LOADING)"
        )
    );
    let _ = reload.join();
}

/// A cluster node whose slots are not all assigned: the cluster is down.
#[tokio::test]
async fn a_cluster_without_full_coverage_says_clusterdown() {
    let node = support::RedisServer::start(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let prefix = support::unique_prefix("down");
    let tag = limitree::store::redis::keys::tree_tag(&prefix, "notifications");
    let slot: u16 = node.command(&["CLUSTER", "KEYSLOT", &tag]).parse().unwrap();
    // Every slot but one other than the tree's.
    let missing = if slot == 0 { 1 } else { 0 };
    let (a, b) = if missing == 0 {
        ("1", "16383")
    } else {
        ("0", "0")
    };
    node.command(&["CLUSTER", "ADDSLOTSRANGE", a, b]);
    if missing == 1 {
        node.command(&["CLUSTER", "ADDSLOTSRANGE", "2", "16383"]);
    }
    eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        let info = node.command(&["CLUSTER", "INFO"]);
        if info.contains("cluster_slots_assigned:16383") {
            Ok(())
        } else {
            Err(info)
        }
    })
    .unwrap();
    let policy = Policy::default_notifications();
    let chain = policy.trees()[0].chain(&[("category", "x")], 1).unwrap();
    let store = RedisStore::lazy(
        RedisConfig::cluster([node.url()])
            .with_key_prefix(prefix)
            .with_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let e = store
        .decide(&chain, Mode::Commit)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "store unavailable: cluster down at a node of the cluster 127.0.0.1:{} (CLUSTERDOWN): The cluster is down",
            node.port()
        )),
        "{e}"
    );
}

/// Log lines written while a test runs (a `tracing` subscriber of its own).
#[derive(Clone, Default)]
struct Captured(Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Redis dies and comes back: one warning when the outage starts (with the
/// cause and `on_error`), one line when it ends (with its length), however
/// many calls failed in between.
#[tokio::test]
async fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let policy = Arc::new(Policy::default_notifications());
    let server = support::RedisServer::start(&[]);
    let port = server.port();
    let clock = ManualClock::new(T0);
    let primary = RedisStore::connect(
        RedisConfig::standalone(server.url())
            .with_key_prefix(support::unique_prefix("logged"))
            .with_timeout(TIMEOUT),
    )
    .await
    .unwrap();
    let store = FallbackStore::new(
        Arc::new(primary),
        MemoryStore::with_clock(&policy, Arc::new(clock.clone())),
        OnError::Deny,
    );
    let chain = policy.trees()[0]
        .chain(&[("category", "errors")], 1)
        .unwrap();
    let decide = || store.decide(&chain, Mode::Commit);
    assert_eq!(decide().await.unwrap().reason, Reason::Ok);

    drop(server);
    for _ in 0..10 {
        let o = decide().await.unwrap();
        assert_eq!((o.allowed, o.reason), (false, Reason::StoreUnavailable));
        clock.advance(Duration::from_millis(300));
    }
    assert!(store.check_ready().await.is_err());
    let down = captured.lines("unavailable");
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(
        down[0].contains(&format!(
            "Redis unavailable: connection to 127.0.0.1:{port} lost"
        )) || down[0].contains(&format!(
            "Redis unavailable: connection refused at 127.0.0.1:{port}"
        )),
        "{}",
        down[0]
    );
    assert!(down[0].contains("; on_error = deny decides"), "{}", down[0]);
    assert!(captured.lines("back after").is_empty());

    let _server = support::RedisServer::start_on(port, &[]);
    eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async {
            match decide().await {
                Ok(o) if o.reason == Reason::Ok => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(decide().await.unwrap().reason, Reason::Ok);
    }
    store.check_ready().await.unwrap();
    let back = captured.lines("back after");
    assert_eq!(back.len(), 1, "{back:#?}");
    assert!(back[0].contains("Redis back after 3.0s"), "{}", back[0]);
    assert_eq!(captured.lines("unavailable").len(), 1);
}

/// Sends one command as an admin holding `password` (the support helper
/// cannot authenticate).
async fn admin(port: u16, password: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}"))?;
    let mut c = client.get_multiplexed_async_connection().await?;
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut c)
        .await
}

/// The password changes on the server and the connection drops: calls fail
/// with an authentication error, and once the password is back they succeed
/// again by themselves (the connection is made anew, not left failed).
#[tokio::test]
async fn an_authentication_failure_on_reconnect_does_not_stick() {
    let server = support::RedisServer::start(&[]);
    let port = server.port();
    server.command(&["CONFIG", "SET", "requirepass", "first"]);
    let store = RedisStore::connect(
        RedisConfig::standalone(format!("redis://:first@127.0.0.1:{port}")).with_timeout(TIMEOUT),
    )
    .await
    .unwrap();
    store.check_ready().await.unwrap();

    admin(port, "first", &["CONFIG", "SET", "requirepass", "second"])
        .await
        .unwrap();
    let _ = admin(port, "second", &["CLIENT", "KILL", "TYPE", "normal"]).await;
    let failed = eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async {
            match store.check_ready().await {
                Err(e) if e.to_string().contains("WRONGPASS") => Ok(e),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap();
    assert!(!failed.to_string().contains("first"), "{failed}");

    admin(port, "second", &["CONFIG", "SET", "requirepass", "first"])
        .await
        .unwrap();
    eventually_async(Duration::from_secs(2), Duration::from_millis(10), || {
        store.check_ready()
    })
    .await
    .unwrap_or_else(|e| panic!("still failing after the password came back: {e}"));
}
