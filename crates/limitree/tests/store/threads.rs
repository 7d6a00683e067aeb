//! Many threads, one chain: the totals must be exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use limitree::{ManualClock, MemoryStore, Mode, Policy};
use rstest::rstest;

use crate::support::T0;

const CATEGORIES: usize = 20;

fn policy(algorithm: &str, global: u64) -> Policy {
    Policy::from_toml_str(
        &format!(
            r#"
[[trees]]
name = "notifications"
[[trees.levels]]
name = "global"
limit = {global}
window = "30m"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "30m"
algorithm = "{algorithm}"
"#
        ),
        "test",
    )
    .unwrap()
}

/// 8 threads × 500 requests over 20 categories, time frozen: the global cap (or,
/// with a roomy global, every category cap) is hit exactly.
#[rstest]
#[case::sliding_log_global_binds("sliding_log", 100, 100)]
#[case::sliding_log_categories_bind("sliding_log", 1000, 200)]
#[case::sliding_window("sliding_window", 100, 100)]
#[case::gcra("gcra", 100, 100)]
#[case::fixed_window_categories_bind("fixed_window", 1000, 200)]
fn concurrent_checks_admit_exactly_the_limit(
    #[case] algorithm: &str,
    #[case] global: u64,
    #[case] expected: u64,
) {
    let policy = Arc::new(policy(algorithm, global));
    let store = Arc::new(MemoryStore::with_clock(
        &policy,
        Arc::new(ManualClock::new(T0)),
    ));
    let per_category: Arc<Vec<AtomicU64>> =
        Arc::new((0..CATEGORIES).map(|_| AtomicU64::new(0)).collect());
    std::thread::scope(|s| {
        for thread in 0..8 {
            let (policy, store, per_category) = (&policy, &store, &per_category);
            s.spawn(move || {
                let tree = &policy.trees()[0];
                for i in 0..500 {
                    let c = (thread * 7 + i) % CATEGORIES;
                    let category = format!("c{c}");
                    let descriptors = [("category", category.as_str())];
                    let chain = tree.chain(&descriptors, 1).unwrap();
                    if store.decide_chain(&chain, Mode::Commit).unwrap().allowed {
                        per_category[c].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let counts: Vec<u64> = per_category
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), expected, "{counts:?}");
    assert!(counts.iter().all(|&c| c <= 10), "{counts:?}");
    // The store's own view agrees: denials consumed nothing.
    let tree = &policy.trees()[0];
    let peek = store
        .decide_chain(&tree.chain(&[("category", "c0")], 0).unwrap(), Mode::Peek)
        .unwrap();
    assert_eq!(peek.levels[0].remaining, global - expected);
    assert_eq!(peek.levels[1].remaining, 10 - counts[0]);
}
