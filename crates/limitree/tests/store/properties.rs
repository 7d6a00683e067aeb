//! Property tests: the memory store against the reference model on random
//! policies and request sequences, on manual time.

use std::sync::Arc;

use limitree::{ManualClock, MemoryStore, Micros, Mode, Policy, Reason, Store};
use proptest::prelude::*;

use crate::model::{Model, buckets};
use crate::support::{ALGORITHMS, T0};

const WINDOWS_S: [u64; 3] = [1, 3, 10];

#[derive(Debug, Clone)]
struct LevelGen {
    algorithm: &'static str,
    limit: u64,
    window_s: u64,
    burst: Option<u64>,
    shadow: bool,
}

fn level_gen() -> impl Strategy<Value = LevelGen> {
    (
        0..4usize,
        1..7u64,
        0..3usize,
        prop::option::of(1..9u64),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(a, limit, w, burst, shadow)| LevelGen {
            algorithm: ALGORITHMS[a],
            limit,
            window_s: WINDOWS_S[w],
            burst: if ALGORITHMS[a] == "gcra" { burst } else { None },
            shadow,
        })
}

/// A tree: optional global level, a category level, an optional user level.
fn policy_gen() -> impl Strategy<Value = String> {
    (prop::option::of(level_gen()), level_gen(), prop::option::of(level_gen())).prop_map(
        |(global, category, user)| {
            let mut text = String::from("[[trees]]\nname = \"t\"\n");
            let mut push = |name: &str, by: &str, l: &LevelGen, required: bool| {
                text.push_str(&format!(
                    "[[trees.levels]]\nname = \"{name}\"\nby = [{by}]\nlimit = {}\nwindow = \"{}s\"\nalgorithm = \"{}\"\nshadow = {}\n",
                    l.limit, l.window_s, l.algorithm, l.shadow
                ));
                if let Some(b) = l.burst {
                    text.push_str(&format!("burst = {b}\n"));
                }
                if !required {
                    text.push_str("required = false\n");
                }
            };
            if let Some(g) = &global {
                push("global", "", g, true);
            }
            push("category", "\"category\"", &category, true);
            if let Some(u) = &user {
                push("user", "\"user\"", u, false);
            }
            text
        },
    )
}

#[derive(Debug, Clone)]
struct Step {
    advance: Micros,
    category: &'static str,
    user: Option<&'static str>,
    cost: u64,
    /// Sometimes each bucket gets its own cost instead (root first).
    bucket_costs: Option<[u64; 3]>,
    dry_run: bool,
}

fn step_gen() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![
        3 => Just(0u64),
        2 => 1..2_000u64,
        3 => 1..1_500_000u64,
        1 => 1..12_000_000u64,
    ];
    (
        advance,
        prop::sample::select(vec!["a", "b", "c"]),
        prop::option::of(prop::sample::select(vec!["u1", "u2"])),
        prop_oneof![1 => Just(0u64), 6 => 1..4u64, 1 => 4..10u64],
        prop::option::weighted(0.3, [0..4u64, 0..4u64, 0..4u64]),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(advance, category, user, cost, bucket_costs, dry_run)| Step {
                advance,
                category,
                user,
                cost,
                bucket_costs,
                dry_run,
            },
        )
}

fn descriptors(step: &Step) -> Vec<(&'static str, &'static str)> {
    let mut d = vec![("category", step.category)];
    if let Some(u) = step.user {
        d.push(("user", u));
    }
    d
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the memory store's futures are ready at once"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Decision for decision, the store says what the reference model says; a
    /// denial changes nothing; a retry at exactly `retry_after` fits and a
    /// microsecond earlier does not.
    #[test]
    fn memory_store_matches_the_reference_model(
        text in policy_gen(),
        steps in prop::collection::vec(step_gen(), 1..60),
    ) {
        let policy = Arc::new(Policy::from_toml_str(&text, "generated").unwrap());
        let clock = ManualClock::new(T0);
        let store = MemoryStore::with_clock(&policy, Arc::new(clock.clone()));
        let tree = &policy.trees()[0];
        let mut model = Model::new(tree.levels.len());
        let mut now = T0;
        for step in &steps {
            now += step.advance;
            clock.set(now);
            let d = descriptors(step);
            let mut chain = tree.chain(d.as_slice(), step.cost).unwrap();
            if let Some(costs) = step.bucket_costs {
                for (bucket, cost) in chain.buckets.iter_mut().zip(costs) {
                    bucket.cost = cost;
                }
            }
            let costs: Vec<u64> = chain.buckets.iter().map(|b| b.cost).collect();
            let mode = Mode::for_request(chain.total_cost(), step.dry_run);
            let before = block_on(store.decide(&chain, Mode::Peek)).unwrap();
            let got = block_on(store.decide(&chain, mode)).unwrap();
            let (allowed, levels) = model.decide(&buckets(&policy, &d), &costs, now, mode);
            prop_assert_eq!(got.allowed, allowed, "step {:?} got {:?}", step, got);
            for (g, m) in got.levels.iter().zip(&levels) {
                prop_assert_eq!((g.allowed, g.remaining), (m.allowed, m.remaining), "step {:?}: {:?}", step, got);
            }
            if !got.allowed || mode != Mode::Commit {
                let after = block_on(store.decide(&chain, Mode::Peek)).unwrap();
                prop_assert_eq!(&before, &after, "a denial, dry run or peek changed state");
            }
            if got.reason == Reason::Limited {
                let retry = got.retry_after.unwrap();
                prop_assert!(retry > 0);
                let probe_mode = if mode == Mode::Peek { Mode::Peek } else { Mode::DryRun };
                // Time only moves forward (a store may forget what expired), so
                // probe a microsecond early first, then at retry_after, and carry on
                // from there.
                clock.set(now + retry - 1);
                let early = block_on(store.decide(&chain, probe_mode)).unwrap();
                now += retry;
                clock.set(now);
                let at = block_on(store.decide(&chain, probe_mode)).unwrap();
                prop_assert!(at.allowed, "not allowed at retry_after {}: {:?}", retry, at);
                prop_assert!(!early.allowed, "allowed 1µs before retry_after {}: {:?}", retry, early);
            }
        }
    }

    /// No algorithm admits more than its bound in any window, counted from the
    /// admissions themselves.
    #[test]
    fn never_over_admits(
        level in level_gen(),
        steps in prop::collection::vec((0..3_000_000u64, 1..4u64), 1..120),
    ) {
        let text = format!(
            "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"l\"\nlimit = {}\nwindow = \"{}s\"\nalgorithm = \"{}\"\n{}",
            level.limit, level.window_s, level.algorithm,
            level.burst.map(|b| format!("burst = {b}\n")).unwrap_or_default()
        );
        let policy = Arc::new(Policy::from_toml_str(&text, "generated").unwrap());
        let clock = ManualClock::new(T0);
        let store = MemoryStore::with_clock(&policy, Arc::new(clock.clone()));
        let spec = policy.trees()[0].levels[0].spec;
        let w = spec.window;
        let mut admitted: Vec<(Micros, u64)> = Vec::new();
        let mut now = T0;
        for (advance, cost) in steps {
            now += advance;
            clock.set(now);
            let chain = policy.trees()[0].chain(&[] as &[(&str, &str)], cost).unwrap();
            if block_on(store.decide(&chain, Mode::Commit)).unwrap().allowed {
                admitted.push((now, cost));
            }
        }
        for &(t, _) in &admitted {
            let sum = |keep: &dyn Fn(Micros) -> bool| -> u64 {
                admitted.iter().filter(|(a, _)| keep(*a)).map(|(_, c)| c).sum()
            };
            match level.algorithm {
                // Exact rolling window: any window ending at an admission.
                "sliding_log" => prop_assert!(sum(&|a| a <= t && a + w > t) <= spec.limit),
                // Each aligned window (sliding_window's estimate is at least `curr`).
                "fixed_window" | "sliding_window" => prop_assert!(sum(&|a| a / w == t / w) <= spec.limit),
                // Over any span from an admission, at most burst + span / interval.
                _ => {
                    for &(end, _) in admitted.iter().filter(|(e, _)| *e >= t) {
                        let units = sum(&|a| a >= t && a <= end);
                        prop_assert!(units <= spec.burst + (end - t) / spec.emission_interval());
                    }
                }
            }
        }
    }
}
