//! Load tool for the Slack relay: ingest rate of `POST /v1/notify` beside
//! `POST /v1/check`, and the latency the relay adds between the HTTP request
//! and the webhook call when pacing does not hold it back.
//!
//! ```sh
//! cargo bench -p limitree-server --bench notify_load
//! ```
//!
//! Everything is on loopback and bounded in count and time; the tool stops by
//! itself. Three runtimes, like three processes: the relay server (a
//! multi-thread runtime with the default worker count, as `limitree serve`
//! builds it, serving through `limitree_server::server::run`), a mock Slack
//! (one thread; answers 200 `ok` and records when each call arrived, with its
//! text), and the load clients (reqwest over keep-alive connections).
//!
//! The config makes neither the policy nor pacing bind: two levels (global and
//! per category, the default policy's shape) with limits of 10⁹/s, and
//! `[notify] pace = "1us"`, `burst = 1000000`, `queue_capacity = 1000000`.
//! Each part runs once with `fsync = false` and once with `fsync = true`, each
//! on its own server and outbox (a temp dir, on the same disk as `/tmp`).
//!
//! Parts, per fsync setting:
//! 1. ingest: `N` requests from `C` concurrent clients, first to `/v1/check`
//!    then to `/v1/notify` on the same server → answers per second and the
//!    POST's p50/p99; then how long the single webhook worker takes to deliver
//!    what was accepted (its deliveries per second).
//! 2. added latency: `S` notifications one at a time (each after the previous
//!    was delivered, and a pause for its outbox `done`): from sending the POST
//!    to the mock receiving the webhook call, and to the 202. Alternated with
//!    the same client posting the same body straight to the mock, the floor of
//!    one loopback HTTP hop.
//!
//! 3. parts of the path, one at a time, for where the time goes: a
//!    `/v1/check` round trip on the same server (HTTP + limiter, alternated
//!    with the samples of 2), an outbox append alone (`FileOutbox::append`, as
//!    the handler calls it, in another temp dir), and `write` + `fdatasync`
//!    of a line in the outbox's directory.
//!
//! Knobs (environment): `NOTIFY_LOAD_N` (20000), `NOTIFY_LOAD_CLIENTS` (32),
//! `NOTIFY_LOAD_SAMPLES` (500).

// A load tool measures wall-clock latency and throughput of a real server:
// real time is what it reports, so the workspace's ban on `Instant::now`
// (take time from a `limitree::Clock`) does not fit it.
#![expect(
    clippy::disallowed_methods,
    reason = "a load tool measures real time (Instant::now)"
)]

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use limitree::SystemClock;
use limitree_server::app::App;
use limitree_server::config::Config;
use limitree_server::server::{self, Lifecycle};
use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};

/// Longest an ingest phase may take before it stops sending.
const PHASE_DEADLINE: Duration = Duration::from_secs(40);
/// Longest to wait for the worker to deliver what was accepted.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);
/// Longest to wait for one webhook call in the latency part.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(5);
/// Requests to each endpoint before measuring (connections, allocations).
const WARMUP: usize = 300;

/// Limits that never bind, in the default policy's shape.
const POLICY: &str = r#"
[[trees]]
name = "notifications"
[[trees.levels]]
name = "global"
limit = 1000000000
window = "1s"
algorithm = "sliding_window"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 1000000000
window = "1s"
algorithm = "sliding_window"
"#;

/// Categories requests cycle through.
const CATEGORIES: usize = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// Mock Slack

/// One webhook call: when it arrived (handler entry) and its `text`.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    text: String,
}

#[derive(Debug, Clone)]
struct Mock {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// The number of hits, for waiters.
    count: watch::Sender<usize>,
}

impl Mock {
    fn new() -> Mock {
        Mock {
            hits: Arc::default(),
            count: watch::channel(0).0,
        }
    }

    fn len(&self) -> usize {
        self.hits.lock().len()
    }

    /// Waits (bounded) until at least `n` calls have arrived.
    async fn wait_for(&self, n: usize, deadline: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(deadline, rx.wait_for(|&c| c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn hook(
    axum::extract::State(mock): axum::extract::State<Mock>,
    request: axum::extract::Request,
) -> &'static str {
    let at = Instant::now();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let n = {
        let mut hits = mock.hits.lock();
        hits.push(Hit { at, text });
        hits.len()
    };
    mock.count.send_replace(n);
    "ok"
}

/// Starts the mock on `rt`; returns its address.
fn start_mock(rt: &Runtime, mock: &Mock) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(mock.clone());
    // Runs until the runtime is dropped at the end of the tool.
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

// ---------------------------------------------------------------------------
// The relay server

#[derive(Debug)]
struct Server {
    base: String,
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn start_server(rt: &Runtime, hook: &str, fsync: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[notify]\ndata_dir = {:?}\ndefault_webhook = \"${{HOOK}}\"\nfsync = {fsync}\n\
         queue_capacity = 1000000\npace = \"1us\"\nburst = 1000000\n{POLICY}",
        dir.path().display().to_string()
    );
    let config = Config::from_toml_str(&text, "notify_load.toml").expect("valid bench config");
    let hook = hook.to_owned();
    let state = App::build(&config, Arc::new(SystemClock::new()), move |var| {
        (var == "HOOK").then(|| hook.clone())
    })
    .expect("bench app")
    .state;
    let lifecycle = Lifecycle {
        shutdown_grace: Duration::from_secs(10),
        ..Lifecycle::from(&config.server)
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    // Joined by `Server::stop`.
    let task = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        server::run(listener, state, lifecycle, async move {
            let _ = stopped.await;
        })
        .await
    });
    Server {
        base: format!("http://{addr}"),
        data_dir: dir.path().to_owned(),
        _dir: dir,
        stop,
        task,
    }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(20), self.task).await {
            Ok(Ok(Ok(()))) => {}
            other => eprintln!("server did not stop cleanly: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Measuring

/// `q`-quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[derive(Debug)]
struct Ingest {
    ok: usize,
    other: usize,
    elapsed: Duration,
    started: Instant,
    p50: Duration,
    p99: Duration,
}

impl Ingest {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// `n` POSTs of `body(i)` to `url` from `clients` concurrent tasks; `ok` counts
/// answers with status `expect`.
async fn ingest(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    clients: usize,
    expect: u16,
    body: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Ingest {
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let started = Instant::now();
    let deadline = started + PHASE_DEADLINE;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, url, next, body) = (
            client.clone(),
            url.to_owned(),
            Arc::clone(&next),
            Arc::clone(&body),
        );
        #[expect(
            clippy::disallowed_methods,
            reason = "joined below, before the phase ends"
        )]
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut other) = (0usize, 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() > deadline {
                    break;
                }
                let payload = body(i);
                let t0 = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(payload)
                    .send()
                    .await;
                match response {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.bytes().await;
                        latencies.push(t0.elapsed());
                        if status == expect && text.is_ok() {
                            ok += 1;
                        } else {
                            if other == 0 {
                                eprintln!("unexpected answer {status}: {text:?}");
                            }
                            other += 1;
                        }
                    }
                    Err(e) => {
                        if other == 0 {
                            eprintln!("request failed: {e}");
                        }
                        other += 1;
                    }
                }
            }
            (latencies, ok, other)
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    let (mut ok, mut other) = (0, 0);
    for task in tasks {
        let (l, o, x) = task.await.unwrap();
        latencies.extend(l);
        ok += o;
        other += x;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ingest {
        ok,
        other,
        elapsed,
        started,
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
    }
}

fn check_body(i: usize) -> String {
    format!(
        r#"{{"descriptors": {{"category": "c{}"}}, "cost": 1}}"#,
        i % CATEGORIES
    )
}

fn notify_body(tag: &str, i: usize) -> String {
    format!(
        r#"{{"category": "c{}", "text": "{tag}-{i}: disk 91% full on db-3"}}"#,
        i % CATEGORIES
    )
}

/// `write` + `fdatasync` of a 250-byte line in `dir`, the outbox's unit of
/// durable work: p50 over 200.
fn fsync_probe(dir: &std::path::Path) -> Duration {
    let path = dir.join("probe.jsonl");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let line = [b'x'; 250];
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t0 = Instant::now();
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
            t0.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    times.sort_unstable();
    quantile(&times, 0.5)
}

/// `FileOutbox::append` alone, one at a time, in a fresh dir: p50 over 200.
async fn append_probe(fsync: bool) -> Duration {
    use limitree_server::notify::outbox::{FileOutbox, Kind, Notification, Outbox as _};
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::open(dir.path(), fsync).unwrap();
    let mut times = Vec::with_capacity(200);
    for i in 0..200 {
        let n = Notification {
            id: uuid_like(i),
            kind: Kind::Message,
            tree: "notifications".to_owned(),
            category: "c0".to_owned(),
            payload: serde_json::json!({"text": format!("probe-{i}: disk 91% full on db-3")}),
            request_id: Some("00000000-0000-4000-8000-000000000000".to_owned()),
            accepted_at: 1_700_000_000_000_000,
        };
        let t0 = Instant::now();
        outbox.append(n).await.unwrap();
        times.push(t0.elapsed());
    }
    times.sort_unstable();
    quantile(&times, 0.5)
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

#[derive(Debug, Default)]
struct Latency {
    to_webhook: Vec<Duration>,
    to_202: Vec<Duration>,
    direct: Vec<Duration>,
    check: Vec<Duration>,
    missing: usize,
}

/// One notification at a time, each alternated with a direct POST to the mock.
async fn latency(
    client: &reqwest::Client,
    server: &Server,
    hook: &str,
    mock: &Mock,
    samples: usize,
    tag: &str,
) -> Latency {
    let url = format!("{}/v1/notify", server.base);
    let mut out = Latency::default();
    for i in 0..samples {
        // Through the relay.
        let before = mock.len();
        let text = format!("{tag}-{i}");
        let body = format!(r#"{{"category": "c{}", "text": "{text}"}}"#, i % CATEGORIES);
        let t0 = Instant::now();
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let _ = response.bytes().await;
        let t202 = t0.elapsed();
        assert_eq!(status, 202, "notify answered {status}");
        if mock.wait_for(before + 1, SAMPLE_DEADLINE).await {
            let hit = mock.hits.lock()[before].clone();
            assert_eq!(hit.text, text, "the mock received another notification");
            out.to_webhook.push(hit.at - t0);
            out.to_202.push(t202);
        } else {
            out.missing += 1;
        }
        // The worker marks it done in the outbox after Slack's answer; let
        // that finish so the next sample does not wait for the journal.
        tokio::time::sleep(Duration::from_millis(5)).await;

        // Straight to the mock: one loopback HTTP hop.
        let before = mock.len();
        let body = format!(r#"{{"text": "direct-{tag}-{i}"}}"#);
        let t0 = Instant::now();
        let response = client
            .post(hook)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let _ = response.bytes().await;
        if mock.wait_for(before + 1, SAMPLE_DEADLINE).await {
            let hit = mock.hits.lock()[before].clone();
            out.direct.push(hit.at - t0);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;

        // A check on the same server: HTTP and the limiter, no relay.
        let t0 = Instant::now();
        let response = client
            .post(format!("{}/v1/check", server.base))
            .header("content-type", "application/json")
            .body(check_body(i))
            .send()
            .await
            .unwrap();
        let _ = response.bytes().await;
        out.check.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out.check.sort_unstable();
    out.to_webhook.sort_unstable();
    out.to_202.sort_unstable();
    out.direct.sort_unstable();
    out
}

fn main() {
    let n = env_usize("NOTIFY_LOAD_N", 20_000);
    let clients = env_usize("NOTIFY_LOAD_CLIENTS", 32);
    let samples = env_usize("NOTIFY_LOAD_SAMPLES", 500);

    // The server as `limitree serve` runs it: multi-thread, default workers.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("relay")
        .build()
        .unwrap();
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("mock-slack")
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("load")
        .build()
        .unwrap();

    let mock = Mock::new();
    let hook = format!("http://{}/hook", start_mock(&mock_rt, &mock));
    println!("notify_load: N = {n}, C = {clients} clients, {samples} latency samples");

    for fsync in [false, true] {
        let server = start_server(&server_rt, &hook, fsync);
        client_rt.block_on(async {
            let client = reqwest::Client::new();
            let check_url = format!("{}/v1/check", server.base);
            let notify_url = format!("{}/v1/notify", server.base);
            // Wait for the listener to serve.
            for _ in 0..100 {
                if client
                    .get(format!("{}/healthz", server.base))
                    .send()
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let probe = fsync_probe(&server.data_dir);
            let append = append_probe(fsync).await;

            // Warm up both endpoints, then let the warm-up deliveries finish.
            let base = mock.len();
            ingest(&client, &check_url, WARMUP, clients, 200, check_body).await;
            let warm = ingest(&client, &notify_url, WARMUP, clients, 202, |i| {
                notify_body("warm", i)
            })
            .await;
            mock.wait_for(base + warm.ok, DRAIN_DEADLINE).await;

            let check = ingest(&client, &check_url, n, clients, 200, check_body).await;
            let base = mock.len();
            let tag = format!("load-{fsync}");
            let notify = ingest(&client, &notify_url, n, clients, 202, move |i| {
                notify_body(&tag, i)
            })
            .await;
            let drained = mock.wait_for(base + notify.ok, DRAIN_DEADLINE).await;
            let (delivered, last, distinct) = {
                let hits = mock.hits.lock();
                let mine = &hits[base..];
                let last = mine.last().map(|h| h.at);
                let distinct: HashSet<&str> = mine.iter().map(|h| h.text.as_str()).collect();
                (mine.len(), last, distinct.len())
            };
            let deliver_span = last.map_or(Duration::ZERO, |l| l - notify.started);
            let lag = last.map_or(Duration::ZERO, |l| {
                l.saturating_duration_since(notify.started + notify.elapsed)
            });

            let lat = latency(
                &client,
                &server,
                &hook,
                &mock,
                samples,
                &format!("lat-{fsync}"),
            )
            .await;
            server.stop().await;

            println!();
            println!("== fsync = {fsync} ==");
            println!(
                "outbox: write+fdatasync of 250 B p50 {:.0} µs; FileOutbox::append p50 {:.0} µs",
                us(probe),
                us(append)
            );
            println!(
                "ingest /v1/check : {:>6} ok, {} other, {:>8.0} req/s, p50 {:>7.0} µs, p99 {:>7.0} µs",
                check.ok,
                check.other,
                check.rate(),
                us(check.p50),
                us(check.p99)
            );
            println!(
                "ingest /v1/notify: {:>6} ok, {} other, {:>8.0} 202/s, p50 {:>7.0} µs, p99 {:>7.0} µs",
                notify.ok,
                notify.other,
                notify.rate(),
                us(notify.p50),
                us(notify.p99)
            );
            println!(
                "delivery: {delivered}/{} reached the mock ({distinct} distinct{}), {:.0} deliveries/s from the first POST; last {:.2} s after the last 202",
                notify.ok,
                if drained { "" } else { ", TIMED OUT" },
                delivered as f64 / deliver_span.as_secs_f64().max(1e-9),
                lag.as_secs_f64()
            );
            println!(
                "latency (one at a time, {} samples, {} missing): POST → webhook call p50 {:.0} µs, p99 {:.0} µs; POST → 202 p50 {:.0} µs, p99 {:.0} µs; direct POST → mock p50 {:.0} µs, p99 {:.0} µs; /v1/check round trip p50 {:.0} µs, p99 {:.0} µs",
                lat.to_webhook.len(),
                lat.missing,
                us(quantile(&lat.to_webhook, 0.5)),
                us(quantile(&lat.to_webhook, 0.99)),
                us(quantile(&lat.to_202, 0.5)),
                us(quantile(&lat.to_202, 0.99)),
                us(quantile(&lat.direct, 0.5)),
                us(quantile(&lat.direct, 0.99)),
                us(quantile(&lat.check, 0.5)),
                us(quantile(&lat.check, 0.99)),
            );
        });
    }
    drop(client_rt);
    drop(server_rt);
    drop(mock_rt);
}
