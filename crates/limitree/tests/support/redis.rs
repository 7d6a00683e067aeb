//! Real `redis-server` processes for tests: a standalone server and a
//! 3-primary Cluster, each started once per test binary on free loopback ports
//! and shared by its tests (every test isolates itself with a fresh key prefix).
//!
//! The tests only ever talk to servers started here: never to 6379 or anything
//! already running. Each server is started through a tiny `sh` watchdog that
//! kills it (and removes its directory) once the test process is gone, since
//! statics are never dropped; a [`RedisServer`] that is dropped is killed at once.

#![expect(
    clippy::disallowed_methods,
    reason = "it starts and waits for real redis-server processes, on real time"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use limitree::store::redis::{RedisConfig, RedisStore};

#[path = "eventually.rs"]
pub mod eventually;
use limitree::{Clock, ManualClock};

const INSTALL_HINT: &str = "redis-server is not installed; the Redis store tests start their own \
     servers. Install it with: apt-get update && apt-get install -y redis-server";

/// Which shared deployment a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    Cluster,
}

static STANDALONE: LazyLock<RedisServer> = LazyLock::new(|| RedisServer::start(&[]));
static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(RedisCluster::start);

/// The standalone server shared by this test binary.
pub fn standalone() -> &'static RedisServer {
    &STANDALONE
}

/// The 3-primary cluster shared by this test binary.
pub fn cluster() -> &'static RedisCluster {
    &CLUSTER
}

/// A key prefix no other test (of this or a concurrent run) uses.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "lt-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration for `topology` with a fresh key prefix and a generous
/// timeout (tests run on loaded machines), without a clock override.
pub fn config(topology: Topology) -> RedisConfig {
    let config = match topology {
        Topology::Standalone => RedisConfig::standalone(standalone().url()),
        Topology::Cluster => RedisConfig::cluster(cluster().urls()),
    };
    config
        .with_key_prefix(unique_prefix("t"))
        .with_timeout(Duration::from_secs(5))
}

/// A store on `topology` whose time comes from `clock`, with a fresh key
/// prefix. Synchronous (it connects on first use), so a conformance
/// `Harness::store` can return it directly:
/// `Arc::new(support::redis::store(Topology::Standalone, clock))`.
pub fn store(topology: Topology, clock: ManualClock) -> RedisStore {
    let clock: Arc<dyn Clock> = Arc::new(clock);
    RedisStore::lazy(config(topology).with_clock_override(clock)).expect("valid redis config")
}

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free loopback port with `extra` arguments, and waits
    /// until it answers PING.
    pub fn start(extra: &[&str]) -> RedisServer {
        check_installed();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port_pair();
            match Self::try_start(port, extra) {
                Ok(server) => return server,
                // Another process may have taken the port in between: try another.
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// Starts a server on `port` (e.g. again after [`RedisServer::stop`]), retrying
    /// for a while if the port is still held.
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        check_installed();
        eventually::eventually(Duration::from_secs(10), Duration::from_millis(50), || {
            Self::try_start(port, extra)
        })
        .unwrap_or_else(|e| panic!("could not restart redis-server: {e}"))
    }

    fn try_start(port: u16, extra: &[&str]) -> Result<RedisServer, String> {
        // Unique per start: a stopped server's watchdog removes its own directory.
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "limitree-redis-{}-{port}-{}",
            std::process::id(),
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port_s = port.to_string();
        let dir_s = dir.to_string_lossy().into_owned();
        let log = dir.join("redis.log").to_string_lossy().into_owned();
        let mut args = vec![
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir_s,
            "--logfile",
            &log,
        ];
        args.extend_from_slice(extra);
        // The watchdog shares the shell's pid ($$), which `exec` hands to
        // redis-server: it kills that pid once the test process (PARENT) is gone.
        let script = format!(
            "(while kill -0 {parent} 2>/dev/null && kill -0 $$ 2>/dev/null; do sleep 0.5; done; \
             kill -0 {parent} 2>/dev/null || kill -9 $$ 2>/dev/null; rm -rf '{dir_s}') </dev/null >/dev/null 2>&1 & \
             exec redis-server \"$@\"",
            parent = std::process::id(),
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning redis-server: {e}"))?;
        // Ok(Err(..)): it exited, no point waiting; Err(()): no PONG yet.
        let started =
            eventually::eventually(Duration::from_secs(10), Duration::from_millis(20), || {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                    return Ok(Err(format!(
                        "redis-server exited ({status}) on port {port}: {log}"
                    )));
                }
                match command(port, &["PING"]) {
                    Ok(reply) if reply == "PONG" => Ok(Ok(())),
                    _ => Err(()),
                }
            });
        match started {
            Ok(Ok(())) => Ok(RedisServer { child, port, dir }),
            Ok(Err(exited)) => Err(exited),
            Err(()) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("redis-server on port {port} did not answer PING"))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (the throughput bench pins it to a CPU).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command and returns its reply rendered as text (see [`command`]).
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args)
            .unwrap_or_else(|e| panic!("redis command {args:?} on port {}: {e}", self.port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three primaries, slots split evenly, no replicas.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// The arguments that make a server a cluster node keeping its identity in
/// `conf`.
fn cluster_node_args(conf: &str) -> [&str; 6] {
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        conf,
        "--cluster-node-timeout",
        "5000",
    ]
}

impl RedisServer {
    /// A cluster node on `port` with the identity (node id, slots) kept in
    /// `conf`: a node of a [`RedisCluster`] started again after it died.
    pub fn start_cluster_node_on(port: u16, conf: &std::path::Path) -> RedisServer {
        let conf = conf.to_string_lossy();
        RedisServer::start_on(port, &cluster_node_args(&conf))
    }
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| RedisServer::start(&cluster_node_args(&format!("nodes-{i}.conf"))))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running redis-cli --cluster create: {e}. {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            let within = deadline.saturating_duration_since(Instant::now());
            eventually::eventually(within, Duration::from_millis(50), || {
                let info = node.command(&["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") {
                    Ok(())
                } else {
                    Err(info)
                }
            })
            .unwrap_or_else(|info| panic!("cluster never became ok: {info}"));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node serving `key`'s slot.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let slot: u16 = self.nodes[0]
            .command(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot number");
        let shards = self.nodes[0].command(&["CLUSTER", "SLOTS"]);
        // Rendered as lines "start end ip port id", one per range.
        for line in shards.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 4 {
                let (start, end): (u16, u16) = (f[0].parse().unwrap(), f[1].parse().unwrap());
                if (start..=end).contains(&slot) {
                    let port: u16 = f[3].parse().unwrap();
                    return self.nodes.iter().find(|n| n.port() == port).unwrap();
                }
            }
        }
        panic!("no node serves slot {slot}: {shards}");
    }
}

fn check_installed() {
    match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        _ => panic!("{INSTALL_HINT}"),
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if port > 55_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair found");
}

/// Sends one command over RESP and renders the reply as text: simple strings,
/// bulk strings and integers as they are, errors as `ERR …` (prefixed `-`),
/// arrays as their elements joined by spaces, nested arrays one per line.
pub fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream
        .write_all(out.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader, 0)
}

fn read_reply(r: &mut BufReader<TcpStream>, depth: usize) -> Result<String, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Ok(format!("-{rest}")),
        "$" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| format!("bad bulk length {rest}"))?;
            if n < 0 {
                return Ok("(nil)".to_owned());
            }
            let mut buf = vec![0; usize::try_from(n).unwrap() + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(buf.len() - 2);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| format!("bad array length {rest}"))?;
            let items = (0..n.max(0))
                .map(|_| read_reply(r, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(items.join(if depth == 0 { "\n" } else { " " }))
        }
        _ => Err(format!("unexpected reply line {line:?}")),
    }
}
