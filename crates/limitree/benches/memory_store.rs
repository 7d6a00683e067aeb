//! The memory store deciding a 2-level chain (global + one of 20 categories),
//! side by side with governor doing the same two checks as independent limiters
//! (a direct global limiter and a keyed category limiter) — what a user of
//! governor would write, without atomicity: a request denied by the category
//! limiter has already consumed the global one.
//!
//! Regime: global 1,000,000 per second, each category 100,000 per second, system
//! clock; at these speeds the global level binds and a share of requests is
//! denied, in both implementations.
//!
//! Run: `cargo bench -p limitree --bench memory_store`

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
const GLOBAL_PER_SECOND: u32 = 1_000_000;
const CATEGORY_PER_SECOND: u32 = 100_000;

fn policy(algorithm: &str) -> Policy {
    Policy::from_toml_str(
        &format!(
            r#"
[[trees]]
name = "notifications"
[[trees.levels]]
name = "global"
limit = {GLOBAL_PER_SECOND}
window = "1s"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["category"]
limit = {CATEGORY_PER_SECOND}
window = "1s"
algorithm = "{algorithm}"
"#
        ),
        "bench",
    )
    .expect("valid bench policy")
}

/// Runs `op(i)` `iters` times split over `threads` threads; the wall time.
fn run_threads(iters: u64, threads: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..iters / threads {
                    op(i * threads + t);
                }
            });
        }
    });
    start.elapsed()
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_level_chain");
    for threads in [1u64, 2] {
        for algorithm in ["sliding_log", "sliding_window", "gcra", "fixed_window"] {
            let policy = Arc::new(policy(algorithm));
            let store = MemoryStore::new(&policy);
            let tree = &policy.trees()[0];
            group.bench_function(format!("limitree_{algorithm}/threads={threads}"), |b| {
                b.iter_custom(|iters| {
                    run_threads(iters, threads, &|i| {
                        let descriptors = [("category", CATEGORIES[(i % 20) as usize])];
                        let chain = tree.chain(&descriptors).expect("chain");
                        black_box(
                            store
                                .decide_chain(&chain, 1, Mode::Commit)
                                .expect("decides"),
                        );
                    })
                });
            });
        }
        let global = RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(GLOBAL_PER_SECOND).expect("non-zero"),
        ));
        let keyed = RateLimiter::keyed(Quota::per_second(
            NonZeroU32::new(CATEGORY_PER_SECOND).expect("non-zero"),
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
    group.finish();
}

criterion_group! {
    name = memory_store;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(memory_store);
