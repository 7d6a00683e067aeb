//! The key correctness test of the Redis store: the same random sequences of
//! requests (policies over every algorithm, 1–3 levels, overrides, shadow
//! levels, fair sharing under a global or a keyed parent, costs around the
//! limits, dry runs and peeks, time moving on a manual
//! clock, now and then backwards) go to a `MemoryStore` and a `RedisStore`,
//! which must answer every one of them identically.

use std::sync::Arc;

use limitree::{Clock, ManualClock, MemoryStore, Micros, Mode, Policy, Store};
use proptest::prelude::*;

use crate::support::redis::{self as support, Topology};
use crate::support::{ALGORITHMS, T0};

const WINDOWS_US: [u64; 5] = [1_000, 1_337, 60_000, 1_000_000, 1_800_000_000];
const VALUES: [&str; 3] = ["a", "b", "a,b"];

#[derive(Debug, Clone)]
struct LevelSpec {
    algorithm: usize,
    keyed: bool,
    limit: u64,
    window: usize,
    burst: Option<u64>,
    shadow: bool,
    /// An override for value "a": (limit, window index).
    override_a: Option<(u64, usize)>,
    /// Fair sharing: guarantees for values "a" and "b" of the level above
    /// (written only where the policy accepts them, see `policy_toml`).
    shares: Option<(u64, u64)>,
    /// A keyed level picks its bucket by `team` instead of `k`: a keyed
    /// parent whose buckets a level below (by `k`) may split.
    by_team: bool,
    /// A keyed level (not `by_team`) picks its bucket by `team` and `k`: a
    /// child that repeats a keyed parent's key, whose guarantees (for
    /// team "a") live in that parent's bucket only.
    by_both: bool,
}

#[derive(Debug, Clone)]
struct Step {
    value: usize,
    cost_pick: u64,
    dry_run: bool,
    advance: Micros,
    /// Sometimes the clock goes backwards instead (stores must tolerate it).
    back: Option<Micros>,
    /// Sometimes each bucket gets its own cost (root first), 0 included.
    level_costs: Option<[u64; 3]>,
    /// The `team` value (for levels keyed by it).
    team: usize,
}

fn level() -> impl Strategy<Value = LevelSpec> {
    (
        0..ALGORITHMS.len(),
        any::<bool>(),
        1..=5u64,
        0..WINDOWS_US.len(),
        proptest::option::of(1..=7u64),
        proptest::bool::weighted(0.15),
        proptest::option::weighted(0.3, (1..=6u64, 0..WINDOWS_US.len())),
        proptest::option::weighted(0.4, (1..=3u64, 1..=2u64)),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(algorithm, keyed, limit, window, burst, shadow, override_a, shares, by_team)| {
                LevelSpec {
                    shares: if keyed { shares } else { None },
                    by_team: keyed && by_team,
                    by_both: false,
                    algorithm,
                    keyed,
                    limit,
                    window,
                    burst: if ALGORITHMS[algorithm] == "gcra" {
                        burst
                    } else {
                        None
                    },
                    shadow,
                    override_a: if keyed { override_a } else { None },
                }
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..VALUES.len(),
        0..=8u64,
        proptest::bool::weighted(0.2),
        prop_oneof![
            3 => Just(0u64),
            3 => 0..3_000u64,
            2 => 0..2_000_000u64,
            1 => 0..4_000_000_000u64,
        ],
        proptest::option::weighted(0.05, 0..2_000_000u64),
        proptest::option::weighted(0.3, [0..=4u64, 0..=4u64, 0..=4u64]),
        0..VALUES.len(),
    )
        .prop_map(
            |(value, cost_pick, dry_run, advance, back, level_costs, team)| Step {
                team,
                value,
                cost_pick,
                dry_run,
                advance,
                back,
                level_costs,
            },
        )
}

fn policy_toml(levels: &[LevelSpec]) -> String {
    let mut text = String::from("[[trees]]\nname = \"t\"\n");
    for (i, l) in levels.iter().enumerate() {
        text.push_str(&format!(
            "[[trees.levels]]\nname = \"l{i}\"\nlimit = {}\nwindow = \"{}us\"\nalgorithm = \"{}\"\nshadow = {}\n",
            l.limit, WINDOWS_US[l.window], ALGORITHMS[l.algorithm], l.shadow
        ));
        if let Some(b) = l.burst {
            text.push_str(&format!("burst = {b}\n"));
        }
        if l.keyed && l.by_both {
            text.push_str("by = [\"team\", \"k\"]\n");
            let parent = i.checked_sub(1).map(|p| &levels[p]);
            if let (Some((a, b)), Some(p)) = (l.shares, parent)
                && shares_fit(p, a, b)
            {
                text.push_str(&format!(
                    "overrides = [{{ when = {{ team = \"a\", k = \"a\" }}, guaranteed = {a} }}, \
                     {{ when = {{ team = \"a\", k = \"b\" }}, guaranteed = {b} }}]\n"
                ));
            }
        } else if l.keyed {
            let key = if l.by_team { "team" } else { "k" };
            text.push_str(&format!("by = [\"{key}\"]\n"));
            if let Some((limit, window)) = l.override_a {
                text.push_str(&format!(
                    "overrides = [{{ when = {{ {key} = \"a\" }}, limit = {limit}, window = \"{}us\" }}]\n",
                    WINDOWS_US[window]
                ));
            }
            // Shares of the level above, where the policy takes them: a
            // non-shadow parent whose limit (and gcra burst) holds them —
            // global, or keyed by `team` without overrides (this level is by `k`).
            // Several levels may give shares: a level between two is a
            // child of one and the parent of the other.
            let parent = i.checked_sub(1).map(|p| &levels[p]);
            if let (Some((a, b)), Some(p)) = (l.shares, parent) {
                let splittable = !p.keyed || p.by_team != l.by_team;
                if splittable && shares_fit(p, a, b) {
                    text.push_str(&format!("shares = {{ a = {a}, b = {b} }}\n"));
                }
            }
        }
    }
    text
}

/// Whether guarantees `a` and `b` fit parent `p` where the policy takes
/// them: a non-shadow parent whose limit (and gcra burst) holds them, and
/// its override's for "a" too (that bucket is split from the override's
/// limit and burst: the level's burst unless that equals its limit).
fn shares_fit(p: &LevelSpec, a: u64, b: u64) -> bool {
    let fits = |limit: u64, burst: u64| {
        let whole = |g: u64| ALGORITHMS[p.algorithm] != "gcra" || g * burst >= limit;
        a + b <= limit && whole(a) && whole(b)
    };
    let override_holds = p.override_a.is_none_or(|(limit, _)| {
        let burst = match p.burst {
            Some(b) if b != p.limit => b,
            _ => limit,
        };
        fits(limit, burst)
    });
    !p.shadow && p.keyed_or_global() && fits(p.limit, p.burst.unwrap_or(p.limit)) && override_holds
}

impl LevelSpec {
    /// Any level can be a parent (a `by_both` one only of levels that
    /// repeat both its keys, which none here does).
    fn keyed_or_global(&self) -> bool {
        !self.by_both
    }
}

/// Runs one scenario; `false` if its policy is invalid (rejected, not failed).
fn run(topology: Topology, levels: &[LevelSpec], start: Micros, steps: &[Step]) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let text = policy_toml(levels);
    let Ok(policy) = Policy::from_toml_str(&text, "differential") else {
        // E.g. an override whose burst rule does not hold: not this test's concern.
        return false;
    };
    let policy = Arc::new(policy);
    let clock = ManualClock::new(start);
    let memory = MemoryStore::with_clock(&policy, Arc::new(clock.clone()));
    let redis = support::store(topology, clock.clone());
    let tree = &policy.trees()[0];
    let max_capacity = tree
        .levels
        .iter()
        .map(|l| l.spec.capacity())
        .max()
        .unwrap_or(1);
    runtime.block_on(async {
        for (i, s) in steps.iter().enumerate() {
            match s.back {
                Some(back) => clock.set(clock.now().saturating_sub(back)),
                None => clock.advance_micros(s.advance),
            }
            let descriptors = [("k", VALUES[s.value]), ("team", VALUES[s.team])];
            // Costs 0..=capacity+1, biased to the small ones.
            let cost = s.cost_pick.min(max_capacity + 1);
            let mut chain = tree.chain(&descriptors, cost).expect("valid chain");
            if let Some(costs) = s.level_costs {
                for (bucket, cost) in chain.buckets.iter_mut().zip(costs) {
                    bucket.cost = cost;
                }
            }
            let mode = Mode::for_request(chain.total_cost(), s.dry_run);
            let mut expected = memory.decide(&chain, mode).await.expect("memory decides");
            // A bucket's last admission lives with its state, which the two
            // stores forget at different times once it is idle (the memory
            // store when it sweeps, Redis when the key expires): compared in
            // `redis_store::a_peek_reports_the_last_admission` instead.
            let mut actual = redis.decide(&chain, mode).await.expect("redis decides");
            for level in expected.levels.iter_mut().chain(actual.levels.iter_mut()) {
                level.since_admission = None;
            }
            assert_eq!(
                actual,
                expected,
                "step {i} ({s:?}, cost {cost}, {mode:?}) at t={} under\n{text}",
                clock.now()
            );
        }
    });
    true
}

fn scenario() -> impl Strategy<Value = (Vec<LevelSpec>, Micros, Vec<Step>)> {
    (
        proptest::collection::vec(level(), 1..=3),
        prop_oneof![Just(T0), T0..T0 + 3_600_000_000],
        proptest::collection::vec(step(), 1..=40),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn standalone_redis_decides_like_memory((levels, start, steps) in scenario()) {
        prop_assume!(run(Topology::Standalone, &levels, start, &steps));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn cluster_redis_decides_like_memory((levels, start, steps) in scenario()) {
        prop_assume!(run(Topology::Cluster, &levels, start, &steps));
    }
}

/// Fair sharing under a keyed parent, which the random trees above reach
/// only rarely: the parent by `team` (two teams' buckets, each split on its
/// own, sometimes team "a" with an override of its own limit), the child by
/// `k` with guarantees for "a" and "b".
fn keyed_parent_scenario() -> impl Strategy<Value = (Vec<LevelSpec>, Micros, Vec<Step>)> {
    (
        level(),
        level(),
        (1..=3u64, 1..=2u64),
        prop_oneof![Just(T0), T0..T0 + 3_600_000_000],
        proptest::collection::vec(step(), 1..=40),
    )
        .prop_map(|(parent, child, shares, start, steps)| {
            // With an override for team "a" sometimes (its buckets are
            // split from the override's limit).
            let parent = LevelSpec {
                keyed: true,
                by_team: true,
                shadow: false,
                shares: None,
                limit: parent.limit.max(shares.0 + shares.1),
                ..parent
            };
            let child = LevelSpec {
                keyed: true,
                by_team: false,
                shares: Some(shares),
                ..child
            };
            (vec![parent, child], start, steps)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn standalone_redis_splits_a_keyed_parent_like_memory((levels, start, steps) in keyed_parent_scenario()) {
        prop_assume!(policy_toml(&levels).contains("shares"));
        prop_assume!(run(Topology::Standalone, &levels, start, &steps));
    }

    #[test]
    fn cluster_redis_splits_a_keyed_parent_like_memory((levels, start, steps) in keyed_parent_scenario()) {
        prop_assume!(policy_toml(&levels).contains("shares"));
        prop_assume!(run(Topology::Cluster, &levels, start, &steps));
    }
}

/// Two sharing levels in one tree: `l0` (global) split for teams "a" and
/// "b" of `l1` (by `team`), each team's bucket split for "a" and "b" of `l2`
/// (by `k`): `l1` is a child of `l0` and the parent of `l2`.
fn two_splits_scenario() -> impl Strategy<Value = (Vec<LevelSpec>, Micros, Vec<Step>)> {
    (
        level(),
        level(),
        level(),
        ((1..=3u64, 1..=2u64), (1..=3u64, 1..=2u64)),
        prop_oneof![Just(T0), T0..T0 + 3_600_000_000],
        proptest::collection::vec(step(), 1..=40),
    )
        .prop_map(|(root, middle, leaf, (s1, s2), start, steps)| {
            let root = LevelSpec {
                keyed: false,
                by_team: false,
                override_a: None,
                shadow: false,
                shares: None,
                limit: root.limit.max(s1.0 + s1.1),
                ..root
            };
            let middle = LevelSpec {
                keyed: true,
                by_team: true,
                override_a: None,
                shadow: false,
                shares: Some(s1),
                limit: middle.limit.max(s2.0 + s2.1),
                ..middle
            };
            let leaf = LevelSpec {
                keyed: true,
                by_team: false,
                shares: Some(s2),
                ..leaf
            };
            (vec![root, middle, leaf], start, steps)
        })
}

/// A child that repeats its keyed parent's key: the parent by `team`
/// (sometimes with an override for team "a"), the child by `team` and `k`
/// with guarantees for (a, a) and (a, b), which live in team a's bucket
/// only: every other team's bucket is all pool. The child's own limit is a
/// ceiling per team and `k`.
fn repeated_key_scenario() -> impl Strategy<Value = (Vec<LevelSpec>, Micros, Vec<Step>)> {
    (
        level(),
        level(),
        (1..=3u64, 1..=2u64),
        prop_oneof![Just(T0), T0..T0 + 3_600_000_000],
        proptest::collection::vec(step(), 1..=40),
    )
        .prop_map(|(parent, child, shares, start, steps)| {
            let parent = LevelSpec {
                keyed: true,
                by_team: true,
                shadow: false,
                shares: None,
                limit: parent.limit.max(shares.0 + shares.1),
                ..parent
            };
            let child = LevelSpec {
                keyed: true,
                by_team: false,
                by_both: true,
                override_a: None,
                shares: Some(shares),
                ..child
            };
            (vec![parent, child], start, steps)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn standalone_redis_splits_per_parent_bucket_like_memory((levels, start, steps) in repeated_key_scenario()) {
        prop_assume!(policy_toml(&levels).contains("guaranteed"));
        prop_assume!(run(Topology::Standalone, &levels, start, &steps));
    }

    #[test]
    fn cluster_redis_splits_per_parent_bucket_like_memory((levels, start, steps) in repeated_key_scenario()) {
        prop_assume!(policy_toml(&levels).contains("guaranteed"));
        prop_assume!(run(Topology::Cluster, &levels, start, &steps));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn standalone_redis_decides_two_splits_like_memory((levels, start, steps) in two_splits_scenario()) {
        prop_assume!(policy_toml(&levels).matches("shares").count() == 2);
        prop_assume!(run(Topology::Standalone, &levels, start, &steps));
    }

    #[test]
    fn cluster_redis_decides_two_splits_like_memory((levels, start, steps) in two_splits_scenario()) {
        prop_assume!(policy_toml(&levels).matches("shares").count() == 2);
        prop_assume!(run(Topology::Cluster, &levels, start, &steps));
    }
}

/// Batches: concurrent decisions share script calls, and each must report the
/// bucket as the decisions before it in the batch left it. On a frozen clock,
/// the admitted decisions of each bucket, ordered by what they report left,
/// must each have taken exactly their cost from the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_decisions_each_see_the_charges_before_them() {
    let policy = Arc::new(
        Policy::from_toml_str(
            r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 60
window = "1s"
algorithm = "sliding_log"
[[trees.levels]]
name = "per_k"
by = ["k"]
limit = 20
window = "1s"
algorithm = "fixed_window"
"#,
            "batched",
        )
        .unwrap(),
    );
    let clock = ManualClock::new(T0);
    let store = Arc::new(support::store(Topology::Standalone, clock));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let (store, policy) = (Arc::clone(&store), Arc::clone(&policy));
        tasks.spawn(async move {
            let value = VALUES[(i % 3) as usize];
            let descriptors = [("k", value)];
            // Each bucket its own cost, and one bucket charged different
            // costs by the decisions of one batch: the script's memo must
            // evaluate it again for each.
            let (global_cost, k_cost) = (1 + i % 2, 1 + i % 3);
            let mut chain = policy.trees()[0].chain(&descriptors, 1).unwrap();
            chain.buckets[0].cost = global_cost;
            chain.buckets[1].cost = k_cost;
            let outcome = store.decide(&chain, Mode::Commit).await.unwrap();
            (value, (global_cost, k_cost), outcome)
        });
    }
    // Per bucket: (remaining reported, cost) of each admitted decision.
    let mut global = Vec::new();
    let mut per_k: std::collections::HashMap<&str, Vec<(u64, u64)>> = Default::default();
    let mut denied = 0;
    while let Some(joined) = tasks.join_next().await {
        let (value, (global_cost, k_cost), outcome) = joined.unwrap();
        if outcome.allowed {
            global.push((outcome.levels[0].remaining, global_cost));
            per_k
                .entry(value)
                .or_default()
                .push((outcome.levels[1].remaining, k_cost));
        } else {
            denied += 1;
        }
    }
    assert!(denied > 0, "the limits never bound");
    for (name, limit, mut admitted) in [("global", 60, global)]
        .into_iter()
        .chain(per_k.into_iter().map(|(k, a)| (k, 20, a)))
    {
        admitted.sort_by_key(|&(remaining, _)| std::cmp::Reverse(remaining));
        let mut left = limit;
        for &(remaining, cost) in &admitted {
            assert_eq!(remaining, left - cost, "{name}: {admitted:?}");
            left = remaining;
        }
    }
}
