//! Decisions per second through Redis with 64 concurrent callers on one
//! multiplexed connection, on the default policy (tree `notifications`: global
//! 100 per 30m and 10 per 30m per category, sliding_log; 20 categories), side
//! by side in one run against one `redis-server` this bench starts on a free
//! loopback port:
//!
//! - `limitree`: [`RedisStore::decide`] (EVALSHA of `decide.lua`);
//! - `seed`: the baseline, one EVAL per decision of the seed's two-sorted-set
//!   script (ZREMRANGEBYSCORE + ZCARD on the global and the category set, ZADD
//!   to both if both have room), time from the client, over one multiplexed
//!   connection with redis-rs' default TCP settings;
//! - `ceiling`: `redis-benchmark -c 64 -P 1 EVALSHA <sha of "return 1"> 0`
//!   (64 connections, one command in flight each: the 64 callers' shape) and
//!   `-c 1 -P 64` (one connection with 64 pipelined: the multiplexed
//!   connection's shape) — what Redis itself can do with a trivial script.
//!
//! As in production, the default policy saturates after 100 admissions per 30
//! minutes: the steady state measured is (mostly) denials, for both scripts.
//!
//! Where the processes run: by default `redis-server` gets the last CPU to
//! itself and this process (its callers, and `redis-benchmark`, which it
//! starts) the others, as when Redis is a server of its own. On a 2-CPU machine
//! shared by both, the client's threads and Redis otherwise preempt each other
//! and every wake-up crosses CPUs, which measures the scheduler more than
//! either client. `LIMITREE_BENCH_PIN=0` measures them sharing every CPU.
//!
//! Prints a Markdown table with the median of the runs (for the ratio: the
//! median of the per-run ratios, each run being measured side by side).
//! Run: `cargo bench -p limitree --features redis --bench redis_throughput`
//! (`LIMITREE_BENCH_RUNS`, default 3; `LIMITREE_BENCH_SECS` per measurement,
//! default 3; `LIMITREE_BENCH_PIN`, default 1).

#![expect(clippy::disallowed_methods, reason = "a load run measures real time")]

#[path = "../tests/support/mod.rs"]
mod test_support;

use test_support::redis as support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use limitree::store::redis::{RedisConfig, RedisStore};
use limitree::{Mode, Policy, Store};

const CALLERS: usize = 64;
const CATEGORIES: usize = 20;

/// The seed's script: both sets pruned and counted; both charged only if both
/// have room.
const SEED_LUA: &str = r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, now - window)
local g = redis.call('ZCARD', KEYS[1])
local c = redis.call('ZCARD', KEYS[2])
if g < tonumber(ARGV[3]) and c < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('ZADD', KEYS[2], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], window)
  redis.call('PEXPIRE', KEYS[2], window)
  return 1
end
return 0
"#;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `CALLERS` copies of `decide` for `secs`; decisions per second, errors.
async fn measure<F, Fut>(secs: u64, decide: F) -> (f64, u64)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let decide = Arc::new(decide);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let (decide, done, errors) = (decide.clone(), done.clone(), errors.clone());
        tasks.spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                if decide(caller, i).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        errors.load(Ordering::Relaxed),
    )
}

async fn limitree(url: &str, run: usize, secs: u64) -> (f64, u64) {
    limitree_on(
        url,
        &format!("bench-limitree-{run}"),
        Policy::default_notifications(),
        secs,
    )
    .await
}

/// The default policy with `c0`–`c9` guaranteed 4 of the global each (pool
/// 60; `c10`–`c19` only borrow).
fn shared_policy() -> Policy {
    let shares: Vec<String> = (0..10).map(|c| format!("c{c} = 4")).collect();
    let text = format!(
        "[[trees]]\nname = \"notifications\"\n\
         [[trees.levels]]\nname = \"global\"\nlimit = 100\nwindow = \"30m\"\n\
         [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n\
         shares = {{ {} }}\n",
        shares.join(", ")
    );
    Policy::from_toml_str(&text, "bench").expect("valid bench policy")
}

/// `LIMITREE_BENCH_SHARES=1`: per run, the default policy and the same with
/// shares, side by side; Redis CPU per decision of each and their ratio.
fn shares_runs(
    server: &support::RedisServer,
    runtime: &tokio::runtime::Runtime,
    runs: usize,
    secs: u64,
) {
    let url = server.url();
    println!(
        "| run | plain (decisions/s) | Redis µs/decision | shares (decisions/s) | Redis µs/decision | Redis CPU ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for run in 0..runs {
        let ((p, _), (_, p_redis)) = with_cpu(server, secs, || {
            runtime.block_on(limitree_on(
                &url,
                &format!("bench-plain-{run}"),
                Policy::default_notifications(),
                secs,
            ))
        });
        let ((s, _), (_, s_redis)) = with_cpu(server, secs, || {
            runtime.block_on(limitree_on(
                &url,
                &format!("bench-shares-{run}"),
                shared_policy(),
                secs,
            ))
        });
        let ratio = s_redis / p_redis;
        ratios.push(ratio);
        println!(
            "| {} | {p:.0} | {p_redis:.2} | {s:.0} | {s_redis:.2} | {ratio:.2}x |",
            run + 1
        );
    }
    let (min, max) = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "\nRedis CPU per decision, shares / plain: median {:.2}x (min {min:.2}x, max {max:.2}x)",
        median(&mut ratios)
    );
}

async fn limitree_on(url: &str, prefix: &str, policy: Policy, secs: u64) -> (f64, u64) {
    let policy = Arc::new(policy);
    let config = RedisConfig::standalone(url)
        .with_key_prefix(prefix.to_owned())
        .with_timeout(Duration::from_secs(5));
    let store = Arc::new(RedisStore::connect(config).await.expect("connects"));
    measure(secs, move |caller, i| {
        let (store, policy) = (store.clone(), policy.clone());
        async move {
            let category = format!("c{}", (caller as u64 + i) % CATEGORIES as u64);
            let descriptors = [("category", category.as_str())];
            let chain = policy.trees()[0].chain(&descriptors, 1).expect("a chain");
            store.decide(&chain, Mode::Commit).await.is_ok()
        }
    })
    .await
}

async fn seed(url: &str, run: usize, secs: u64) -> (f64, u64) {
    // redis-rs' default TCP settings (Nagle on). limitree's connections set
    // TCP_NODELAY; for this baseline it made no measurable difference (4
    // alternated runs each: medians 87.7k with, 86.7k without).
    let client = redis::Client::open(url).expect("a url");
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let member = Arc::new(AtomicU64::new(0));
    measure(secs, move |caller, i| {
        let mut connection = connection.clone();
        let member = member.clone();
        async move {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let category = (caller as u64 + i) % CATEGORIES as u64;
            let reply: redis::RedisResult<i64> = redis::cmd("EVAL")
                .arg(SEED_LUA)
                .arg(2)
                .arg(format!("{{seed-{run}}}:global"))
                .arg(format!("{{seed-{run}}}:category:c{category}"))
                .arg(now_ms)
                .arg(1_800_000)
                .arg(100)
                .arg(10)
                .arg(member.fetch_add(1, Ordering::Relaxed))
                .query_async(&mut connection)
                .await;
            reply.is_ok()
        }
    })
    .await
}

/// `redis-benchmark … EVALSHA <sha> 0`: requests per second.
fn ceiling(port: u16, sha: &str, connections: u32, pipeline: u32) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &connections.to_string(), "-n", "200000"])
        .args(["-P", &pipeline.to_string(), "-q", "EVALSHA", sha, "0"])
        .output()
        .expect("redis-benchmark runs (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // Progress lines end in \r; the last line is the figure.
    text.split(['\r', '\n'])
        .rev()
        .find_map(|l| {
            let rest = l.split(": ").nth(1)?;
            rest.split(" requests per second")
                .next()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no figure in redis-benchmark output: {text}"))
}

/// CPU seconds (user + system) this process has used so far, all threads.
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds (user + system) the Redis server has used so far.
fn redis_cpu(server: &support::RedisServer) -> f64 {
    let info = server.command(&["INFO", "cpu"]);
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    field("used_cpu_user") + field("used_cpu_sys")
}

/// Runs `f`, returning its result and the CPU microseconds the client and
/// Redis spent per decision, given `f`'s decisions per second over `secs`.
fn with_cpu<T>(
    server: &support::RedisServer,
    secs: u64,
    f: impl FnOnce() -> (f64, T),
) -> ((f64, T), (f64, f64)) {
    let (client0, redis0) = (own_cpu(), redis_cpu(server));
    let result = f();
    let (client1, redis1) = (own_cpu(), redis_cpu(server));
    let decisions = result.0 * secs as f64;
    (
        result,
        (
            (client1 - client0) * 1e6 / decisions,
            (redis1 - redis0) * 1e6 / decisions,
        ),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Restricts process `pid` (every thread it has; threads it makes later inherit
/// it) to `cpus` (a `taskset` list such as `0-2`). Says why if it could not.
fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Gives Redis the last CPU and this process the others (see the module
/// docs); describes the placement for the report.
fn place(server: &support::RedisServer) -> String {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if env_or("LIMITREE_BENCH_PIN", 1) == 0 || cpus < 2 {
        return format!("client and redis-server share all {cpus} CPUs");
    }
    let client = if cpus == 2 {
        "0".to_owned()
    } else {
        format!("0-{}", cpus - 2)
    };
    let redis = (cpus - 1).to_string();
    match pin(std::process::id(), &client).and_then(|()| pin(server.pid(), &redis)) {
        Ok(()) => format!(
            "client (and redis-benchmark) on CPU {client}, redis-server alone on CPU {redis}"
        ),
        Err(e) => format!("not pinned ({e}): client and redis-server share all {cpus} CPUs"),
    }
}

fn first_line(command: &str, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let runs = env_or("LIMITREE_BENCH_RUNS", 3) as usize;
    let secs = env_or("LIMITREE_BENCH_SECS", 3);
    let server = support::RedisServer::start(&[]);
    // Before pinning, which narrows what nproc sees.
    let nproc = first_line("nproc", &[]);
    // Before the runtime starts its threads, which inherit this thread's CPUs.
    let placement = place(&server);
    let url = server.url();
    let port = server.port();
    let sha = server.command(&["SCRIPT", "LOAD", "return 1"]);
    let version = server
        .command(&["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    println!(
        "machine: nproc {}, {cpu}, redis {version}, load average {}",
        nproc,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("{placement}");
    println!("{runs} runs of {secs} s per measurement, {CALLERS} concurrent callers\n");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os("LIMITREE_BENCH_SHARES").is_some() {
        return shares_runs(&server, &runtime, runs, secs);
    }
    let mut ours = Vec::new();
    let mut seeds = Vec::new();
    let mut ceil_64 = Vec::new();
    let mut ceil_1 = Vec::new();
    let mut notes = Vec::new();
    println!(
        "| run | limitree (decisions/s) | seed EVAL (decisions/s) | ratio | redis-benchmark -c 64 -P 1 | -c 1 -P 64 | errors (limitree/seed) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for run in 0..runs {
        server.command(&["CONFIG", "RESETSTAT"]);
        let ((o, o_err), (o_client, o_redis)) = with_cpu(&server, secs, || {
            runtime.block_on(limitree(&url, run, secs))
        });
        let stats = server.command(&["INFO", "commandstats"]);
        if let Some(line) = stats.lines().find(|l| l.starts_with("cmdstat_evalsha:")) {
            let field = |name: &str| -> f64 {
                line.split([':', ','])
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            let calls = field("calls");
            notes.push(format!(
                "run {}: {calls:.0} script calls, {:.1} decisions per call, {:.1} us of Redis time per call ({:.2} us per decision)",
                run + 1,
                o * secs as f64 / calls,
                field("usec_per_call"),
                field("usec") / (o * secs as f64),
            ));
        }
        if std::env::var_os("LIMITREE_BENCH_ONLY_LIMITREE").is_some() {
            println!("| {} | {o:.0} | | | | | {o_err}/ |", run + 1);
            notes.push(format!(
                "run {}: CPU per decision: limitree client {o_client:.2} us + Redis {o_redis:.2} us",
                run + 1
            ));
            continue;
        }
        let ((s, s_err), (s_client, s_redis)) =
            with_cpu(&server, secs, || runtime.block_on(seed(&url, run, secs)));
        notes.push(format!(
            "run {}: CPU per decision: limitree client {o_client:.2} us + Redis {o_redis:.2} us; seed client {s_client:.2} us + Redis {s_redis:.2} us",
            run + 1
        ));
        let c64 = ceiling(port, &sha, 64, 1);
        let c1 = ceiling(port, &sha, 1, 64);
        println!(
            "| {} | {o:.0} | {s:.0} | {:.2}x | {c64:.0} | {c1:.0} | {o_err}/{s_err} |",
            run + 1,
            o / s
        );
        ours.push(o);
        seeds.push(s);
        ceil_64.push(c64);
        ceil_1.push(c1);
    }
    if seeds.is_empty() {
        // LIMITREE_BENCH_ONLY_LIMITREE: still say what Redis spent per call.
        for note in &notes {
            println!("{note}");
        }
        return;
    }
    // Each run measures both side by side, so the per-run ratio cancels most of
    // what other load on the machine does to both; its median is the figure.
    let mut ratios: Vec<f64> = ours.iter().zip(&seeds).map(|(o, s)| o / s).collect();
    let ratio = median(&mut ratios);
    let (o, s) = (median(&mut ours), median(&mut seeds));
    let (c64, c1) = (median(&mut ceil_64), median(&mut ceil_1));
    println!("| median | {o:.0} | {s:.0} | {ratio:.2}x | {c64:.0} | {c1:.0} | |");
    println!();
    for note in &notes {
        println!("{note}");
    }
    println!(
        "\nlimitree / seed (a): {ratio:.2}x (median of the per-run ratios); limitree / ceiling (b): {:.0}% of -c 64 -P 1, {:.0}% of -c 1 -P 64",
        100.0 * o / c64,
        100.0 * o / c1
    );
}
