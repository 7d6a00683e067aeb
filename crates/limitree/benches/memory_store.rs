//! The memory store deciding a 2-level chain (global + one of 20 categories),
//! side by side with governor doing the same two checks as independent limiters
//! (a direct global limiter and a keyed category limiter) — what a user of
//! governor would write, without atomicity: a request denied by the category
//! limiter has already consumed the global one.
//!
//! Two regimes, system clock:
//! - `saturated`: global 1,000,000 per second, each category 100,000 per second;
//!   at these speeds the global level binds and most requests are denied, in both
//!   implementations (governor then skips its second check);
//! - `open`: limits of 10^9 per second that never bind, so every request is
//!   admitted and both implementations do all their work.
//!
//! Each algorithm twice: `limitree_*` asks for the full per-level report
//! (`MemoryStore::decide_chain`), `limitree_admit_*` for yes or no and when to
//! retry (`MemoryStore::admit_chain`), what governor answers.
//!
//! Run: `cargo bench -p limitree --bench memory_store`; on a shared machine
//! `LIMITREE_BENCH_CPU=1 cargo bench …` times by the threads' CPU clocks.

#![expect(clippy::disallowed_methods, reason = "a bench measures real time")]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use limitree::{MemoryStore, Mode, Policy};

const CATEGORIES: [&str; 20] = [
    "c00", "c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09", "c10", "c11", "c12",
    "c13", "c14", "c15", "c16", "c17", "c18", "c19",
];
const TEAMS: [&str; 4] = ["t0", "t1", "t2", "t3"];
/// (name, global per second, category per second)
const REGIMES: [(&str, u32, u32); 2] = [
    ("saturated", 1_000_000, 100_000),
    ("open", 1_000_000_000, 1_000_000_000),
];

fn policy(algorithm: &str, global: u32, category: u32) -> Policy {
    policy_with(algorithm, global, category, "", "")
}

/// The two-level policy with `root_by` (e.g. `by = ["team"]`) on the root
/// level and `extra` lines on the category level.
fn policy_with(algorithm: &str, global: u32, category: u32, root_by: &str, extra: &str) -> Policy {
    Policy::from_toml_str(
        &format!(
            r#"
[[trees]]
name = "notifications"
[[trees.levels]]
name = "global"
{root_by}
limit = {global}
window = "1s"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["category"]
limit = {category}
window = "1s"
algorithm = "{algorithm}"
{extra}
"#
        ),
        "bench",
    )
    .expect("valid bench policy")
}

/// Runs `op(i)` `iters` times split over `threads` threads; the wall time,
/// or with `LIMITREE_BENCH_CPU=1` the threads' mean CPU time (their own
/// clocks: what the work cost, without the time another process's work on a
/// shared machine took from them).
fn run_threads(iters: u64, threads: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let cpu = std::env::var_os("LIMITREE_BENCH_CPU").is_some_and(|v| v == "1");
    let start = Instant::now();
    let spent: Duration = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let started = cpu.then(thread_cpu);
                    for i in 0..iters / threads {
                        op(i * threads + t);
                    }
                    started.map_or(Duration::ZERO, |started| thread_cpu() - started)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench thread"))
            .sum()
    });
    if cpu {
        spent / u32::try_from(threads).expect("few threads")
    } else {
        start.elapsed()
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).expect("non-negative"),
        u32::try_from(t.tv_nsec).expect("below 10^9"),
    )
}

fn benches(c: &mut Criterion) {
    if std::env::var_os("LIMITREE_BENCH_SHARES").is_some() {
        return bench_shares(c);
    }
    for (regime, global_limit, category_limit) in REGIMES {
        let mut group = c.benchmark_group(format!("two_level_chain_{regime}"));
        bench_regime(&mut group, global_limit, category_limit);
        group.finish();
    }
}

/// Fair sharing's cost (`LIMITREE_BENCH_SHARES=1`): the open regime's chain
/// without shares, then with `c00`–`c09` guaranteed a share of the global
/// (`c10`–`c19` borrow from the pool), one thread, side by side; then the
/// same with the root keyed by `team` (4 teams, each bucket split).
fn bench_shares(c: &mut Criterion) {
    let (_, global_limit, category_limit) = REGIMES[1];
    let each = global_limit / 20;
    let shares: Vec<String> = CATEGORIES[..10]
        .iter()
        .map(|c| format!("{c} = {each}"))
        .collect();
    let shares = format!("shares = {{ {} }}", shares.join(", "));
    let mut group = c.benchmark_group("shares_open");
    for algorithm in ["sliding_log", "sliding_window", "gcra", "fixed_window"] {
        let team = "by = [\"team\"]";
        for (name, root_by, extra) in [
            ("plain", "", ""),
            ("shares", "", shares.as_str()),
            ("keyed_plain", team, ""),
            ("keyed_shares", team, shares.as_str()),
        ] {
            let policy = Arc::new(policy_with(
                algorithm,
                global_limit,
                category_limit,
                root_by,
                extra,
            ));
            let store = MemoryStore::new(&policy);
            let tree = &policy.trees()[0];
            group.bench_function(format!("{algorithm}/{name}"), |b| {
                b.iter_custom(|iters| {
                    run_threads(iters, 1, &|i| {
                        let descriptors = [
                            ("category", CATEGORIES[(i % 20) as usize]),
                            ("team", TEAMS[((i / 20) % 4) as usize]),
                        ];
                        let chain = tree.chain(&descriptors, 1).expect("chain");
                        black_box(store.decide_chain(&chain, Mode::Commit).expect("decides"));
                    })
                });
            });
        }
    }
    group.finish();
}

fn bench_regime(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    global_limit: u32,
    category_limit: u32,
) {
    for threads in [1u64, 2] {
        for algorithm in ["sliding_log", "sliding_window", "gcra", "fixed_window"] {
            let policy = Arc::new(policy(algorithm, global_limit, category_limit));
            let store = MemoryStore::new(&policy);
            let tree = &policy.trees()[0];
            group.bench_function(format!("limitree_{algorithm}/threads={threads}"), |b| {
                b.iter_custom(|iters| {
                    run_threads(iters, threads, &|i| {
                        let descriptors = [("category", CATEGORIES[(i % 20) as usize])];
                        let chain = tree.chain(&descriptors, 1).expect("chain");
                        black_box(store.decide_chain(&chain, Mode::Commit).expect("decides"));
                    })
                });
            });
            // The same decision for a caller that reads only yes or no.
            group.bench_function(
                format!("limitree_admit_{algorithm}/threads={threads}"),
                |b| {
                    b.iter_custom(|iters| {
                        run_threads(iters, threads, &|i| {
                            let descriptors = [("category", CATEGORIES[(i % 20) as usize])];
                            let chain = tree.chain(&descriptors, 1).expect("chain");
                            black_box(store.admit_chain(&chain, Mode::Commit).expect("decides"));
                        })
                    });
                },
            );
        }
        let global = RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(global_limit).expect("non-zero"),
        ));
        let keyed = RateLimiter::keyed(Quota::per_second(
            NonZeroU32::new(category_limit).expect("non-zero"),
        ));
        group.bench_function(format!("governor_two_checks/threads={threads}"), |b| {
            b.iter_custom(|iters| {
                run_threads(iters, threads, &|i| {
                    let category = CATEGORIES[(i % 20) as usize];
                    // Two independent checks: not atomic, the global is charged even
                    // when the category denies.
                    let ok = global.check().is_ok() && keyed.check_key(&category).is_ok();
                    black_box(ok);
                })
            });
        });
    }
}

criterion_group! {
    name = memory_store;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(memory_store);
