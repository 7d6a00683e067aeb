//! Property tests: the memory store against the reference model on random
//! policies and request sequences, on manual time.

use std::sync::Arc;

use limitree::policy::Tree;
use limitree::{Chain, ManualClock, MemoryStore, Micros, Mode, Policy, Reason, Store};
use proptest::prelude::*;

use crate::model::{Model, buckets, shares};
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

/// Guarantees for categories `a` and `b` (fair sharing), when the global
/// level can give them (see [`shares_line`]).
fn shares_gen() -> impl Strategy<Value = Option<(u64, u64)>> {
    prop::option::weighted(0.4, (1..4u64, 0..3u64))
}

/// The category level's `shares` line for `global`, or nothing when the
/// policy would refuse them (a shadow global, more than its limit, less than a
/// gcra burst unit).
fn shares_line(global: &LevelGen, shares: Option<(u64, u64)>) -> String {
    let Some((a, b)) = shares else {
        return String::new();
    };
    let burst = global.burst.unwrap_or(global.limit);
    let whole = |g: u64| global.algorithm != "gcra" || g * burst >= global.limit;
    if global.shadow || a + b > global.limit || !whole(a) || (b > 0 && !whole(b)) {
        return String::new();
    }
    if b == 0 {
        format!("shares = {{ a = {a} }}\n")
    } else {
        format!("shares = {{ a = {a}, b = {b} }}\n")
    }
}

/// The user level's `shares` line (of the category level, which is then a
/// level between two splits when it has shares of the root too): a
/// guarantee for `u1`, or nothing when the policy would refuse it.
fn user_shares_line(category: &LevelGen, u1: Option<u64>) -> String {
    let Some(g) = u1 else {
        return String::new();
    };
    let burst = category.burst.unwrap_or(category.limit);
    if category.shadow
        || g > category.limit
        || (category.algorithm == "gcra" && g * burst < category.limit)
    {
        return String::new();
    }
    format!("shares = {{ u1 = {g} }}\n")
}

/// A tree: optional root level — global, or keyed by an optional `team` —,
/// a category level (with shares of the root one, sometimes: of each team's
/// bucket when it is keyed), an optional user level (with shares of the
/// category level, sometimes: several sharing levels in one tree).
fn policy_gen() -> impl Strategy<Value = String> {
    (
        prop::option::of(level_gen()),
        level_gen(),
        prop::option::of(level_gen()),
        shares_gen(),
        prop::bool::weighted(0.4),
        prop::option::weighted(0.4, 1..4u64),
        prop::option::weighted(0.4, 1..9u64),
    )
        .prop_map(|(global, category, user, shares, by_team, u1, t1_limit)| {
            let mut text = String::from("[[trees]]\nname = \"t\"\n");
            let category_shares = global
                .as_ref()
                .map(|g| shares_line(g, shares))
                .unwrap_or_default();
            let user_shares = user_shares_line(&category, u1);
            // Team t1's bucket with a limit of its own (the category's
            // shares split it from that), where those shares fit it too;
            // it ends the root level's table.
            let mut t1_override = String::new();
            if let (Some(g), Some(limit), true) = (&global, t1_limit, by_team) {
                let burst = match g.burst {
                    Some(b) if b != g.limit => Some(b),
                    Some(_) => Some(limit),
                    None => None,
                };
                let t1 = LevelGen { limit, burst, ..g.clone() };
                if category_shares.is_empty() || !shares_line(&t1, shares).is_empty() {
                    t1_override = format!(
                        "overrides = [{{ when = {{ team = \"t1\" }}, limit = {limit} }}]\n"
                    );
                }
            }
            let mut push = |name: &str, by: &str, l: &LevelGen, required: bool, extra: &str| {
                text.push_str(extra);
                if name.is_empty() {
                    return;
                }
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
                if by_team {
                    push("global", "\"team\"", g, false, "");
                } else {
                    push("global", "", g, true, "");
                }
            }
            push("category", "\"category\"", &category, true, &t1_override);
            // The category's shares end its table: before the user level's.
            match &user {
                Some(u) => {
                    push("user", "\"user\"", u, false, &category_shares);
                    text.push_str(&user_shares);
                }
                None => push("", "", &category, false, &category_shares),
            }
            text
        })
}

#[derive(Debug, Clone)]
struct Step {
    advance: Micros,
    category: &'static str,
    user: Option<&'static str>,
    /// The root level's value when it is keyed by `team` (ignored otherwise).
    team: Option<&'static str>,
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
        prop::option::weighted(0.85, prop::sample::select(vec!["t1", "t2"])),
    )
        .prop_map(
            |(advance, category, user, cost, bucket_costs, dry_run, team)| Step {
                advance,
                category,
                user,
                team,
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
    if let Some(t) = step.team {
        d.push(("team", t));
    }
    d
}

/// The chain `step` asks for in `tree` (`d`: its descriptors), with its
/// per-bucket costs if it has them, and the mode its cost and dry run make.
fn step_chain<'a>(tree: &'a Tree, d: &'a [(&'a str, &'a str)], step: &Step) -> (Chain<'a>, Mode) {
    let mut chain = tree.chain(d, step.cost).unwrap();
    if let Some(costs) = step.bucket_costs {
        for (bucket, cost) in chain.buckets.iter_mut().zip(costs) {
            bucket.cost = cost;
        }
    }
    let mode = Mode::for_request(chain.total_cost(), step.dry_run);
    (chain, mode)
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
            let (chain, mode) = step_chain(tree, &d, step);
            let costs: Vec<u64> = chain.buckets.iter().map(|b| b.cost).collect();
            let before = block_on(store.decide(&chain, Mode::Peek)).unwrap();
            let got = block_on(store.decide(&chain, mode)).unwrap();
            let shares = shares(&policy, &d);
            let (allowed, levels) =
                model.decide(&buckets(&policy, &d), &shares, &costs, now, mode);
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

    /// Fair sharing: the parent never admits more than its own bound in any
    /// window (the same bounds as `never_over_admits`), whatever mix of values
    /// with and without guarantees arrives; no value passes its ceiling. With
    /// a parent keyed by `team`, each team's bucket holds its bound on its own.
    #[test]
    fn shares_never_over_admit(
        global in level_gen(),
        ceiling in 1..7u64,
        shares in shares_gen(),
        by_team in any::<bool>(),
        steps in prop::collection::vec((0..3_000_000u64, 0..4usize, 1..4u64, 0..2usize), 1..150),
    ) {
        let global = LevelGen { shadow: false, ..global };
        let line = shares_line(&global, shares);
        prop_assume!(!line.is_empty());
        let text = format!(
            "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"global\"\n{}limit = {}\nwindow = \"{}s\"\nalgorithm = \"{}\"\n{}\
             [[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = {ceiling}\nwindow = \"{}s\"\nalgorithm = \"{}\"\n{line}",
            if by_team { "by = [\"team\"]\n" } else { "" },
            global.limit, global.window_s, global.algorithm,
            global.burst.map(|b| format!("burst = {b}\n")).unwrap_or_default(),
            global.window_s, global.algorithm,
        );
        let policy = Arc::new(Policy::from_toml_str(&text, "generated").unwrap());
        let clock = ManualClock::new(T0);
        let store = MemoryStore::with_clock(&policy, Arc::new(clock.clone()));
        let spec = policy.trees()[0].levels[0].spec;
        let w = spec.window;
        // (time, cost, category, the parent bucket: its team, or 0 for a global parent).
        let mut admitted: Vec<(Micros, u64, usize, usize)> = Vec::new();
        let mut now = T0;
        for (advance, value, cost, team) in steps {
            now += advance;
            clock.set(now);
            let category = ["a", "b", "c", "d"][value];
            let descriptors = [("category", category), ("team", ["t1", "t2"][team])];
            let chain = policy.trees()[0].chain(&descriptors, cost).unwrap();
            if block_on(store.decide(&chain, Mode::Commit)).unwrap().allowed {
                admitted.push((now, cost, value, if by_team { team } else { 0 }));
            }
        }
        for &(t, _, _, team) in &admitted {
            // Within the parent bucket of this admission (a category's
            // ceiling is across teams: the category level is not keyed by team).
            let sum = |keep: &dyn Fn(Micros, usize) -> bool| -> u64 {
                admitted.iter().filter(|(a, _, v, p)| *p == team && keep(*a, *v)).map(|(_, c, _, _)| c).sum()
            };
            let across = |keep: &dyn Fn(Micros, usize) -> bool| -> u64 {
                admitted.iter().filter(|(a, _, v, _)| keep(*a, *v)).map(|(_, c, _, _)| c).sum()
            };
            match global.algorithm {
                "sliding_log" => {
                    prop_assert!(sum(&|a, _| a <= t && a + w > t) <= spec.limit);
                    for v in 0..4 {
                        prop_assert!(across(&|a, x| x == v && a <= t && a + w > t) <= ceiling);
                    }
                }
                "fixed_window" | "sliding_window" => {
                    prop_assert!(sum(&|a, _| a / w == t / w) <= spec.limit);
                    for v in 0..4 {
                        prop_assert!(across(&|a, x| x == v && a / w == t / w) <= ceiling);
                    }
                }
                // Each part holds its share of the burst and drips back at
                // its share of the rate: together at most burst + span·limit/window.
                _ => {
                    for &(end, _, _, _) in admitted.iter().filter(|(e, _, _, p)| *e >= t && *p == team) {
                        let units = sum(&|a, _| a >= t && a <= end);
                        let drip = u128::from(end - t) * u128::from(spec.limit) / u128::from(w);
                        prop_assert!(u128::from(units) <= u128::from(spec.burst) + drip);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `admit_chain` (yes or no, for callers that read nothing else) decides
    /// and charges exactly as `decide_chain`: two stores on one clock, one
    /// asked each way, give the same answer at every step and hold the same
    /// state after it (every level's peek equal). Trees with shares take the
    /// fallback through `decide_chain`; the rest the lean path.
    #[test]
    fn admit_chain_decides_and_charges_as_decide_chain(
        text in policy_gen(),
        steps in prop::collection::vec(step_gen(), 1..60),
    ) {
        let policy = Arc::new(Policy::from_toml_str(&text, "generated").unwrap());
        let clock = ManualClock::new(T0);
        let full = MemoryStore::with_clock(&policy, Arc::new(clock.clone()));
        let lean = MemoryStore::with_clock(&policy, Arc::new(clock.clone()));
        let tree = &policy.trees()[0];
        let mut now = T0;
        for step in &steps {
            now += step.advance;
            clock.set(now);
            let d = descriptors(step);
            let (chain, mode) = step_chain(tree, &d, step);
            let want = full.decide_chain(&chain, mode).unwrap();
            let got = lean.admit_chain(&chain, mode).unwrap();
            prop_assert_eq!(
                (got.allowed, got.reason, got.retry_after),
                (want.allowed, want.reason, want.retry_after),
                "step {:?}", step
            );
            prop_assert_eq!(
                lean.decide_chain(&chain, Mode::Peek).unwrap(),
                full.decide_chain(&chain, Mode::Peek).unwrap(),
                "state after step {:?}", step
            );
        }
    }
}
