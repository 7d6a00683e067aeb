//! The backend-conformance suite: every store must pass every test here,
//! unchanged. A store plugs in with a [`Harness`] and [`conformance_suite!`].

use std::sync::Arc;

use limitree::policy::envoy::EnvoyConfig;
use limitree::{Chain, ChainOutcome, ManualClock, Micros, Mode, Policy, Reason, Store, Target};

use crate::support::{ALGORITHMS, T0};

/// An aligned instant (a multiple of every window used here).
pub const S: Micros = 1_000_000;

/// Builds a store of the kind under test for a policy, on a manual clock.
pub trait Harness: Sync {
    fn store(&self, policy: &Arc<Policy>, clock: ManualClock) -> Arc<dyn Store>;
}

/// Stamps every conformance test out for one harness expression.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::conformance_suite!(@tests $harness;
            admits_up_to_the_limit_then_denies,
            a_category_denial_consumes_nothing,
            a_global_denial_consumes_no_category,
            retry_after_is_exact_for_every_algorithm,
            peek_and_dry_run_record_nothing,
            cost_beyond_capacity_is_insufficient,
            shadow_levels_report_but_never_deny,
            overrides_and_optional_levels,
            windows_roll_over,
            trees_are_independent,
            each_bucket_is_charged_its_own_cost,
            an_envoy_domain_decides_a_call_all_or_nothing,
            a_reload_reads_kept_counts_under_a_lower_limit,
            a_reload_reads_kept_counts_under_a_longer_window,
            a_reload_that_changes_the_algorithm_starts_fresh,
            a_reload_that_changes_the_by_keys_starts_fresh,
        );
        $crate::conformance_suite!(@shares $harness;
            shares_never_admit_more_than_the_parent_limit,
            a_guarantee_holds_against_other_values_traffic,
            the_pool_is_first_come_within_ceilings,
            values_without_a_guarantee_only_borrow,
            a_shared_retry_after_is_exact,
            a_reload_keeps_the_parts_only_for_the_same_split,
            a_reload_that_changes_the_split_carries_the_parents_used_units,
            several_levels_of_a_tree_give_shares,
            an_overridden_parent_bucket_is_split_from_its_own_limit,
            a_guarantee_of_a_repeated_key_lives_in_its_parent_bucket,
            a_carry_splits_each_parent_bucket_by_its_own_limit,
            a_team_never_takes_another_teams_guarantees_or_pool,
            each_team_has_its_own_pool_within_shared_ceilings,
            a_split_team_is_listed_and_reset_with_its_parts,
            a_shared_parent_reports_admissions_from_any_part,
        );
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::conformance::$name(&$harness).await;
            }
        )*
    };
    (@shares $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::conformance_shares::$name(&$harness).await;
            }
        )*
    };
}

/// A store plus its clock and policy, with shorthand for requests.
pub struct Fixture {
    pub policy: Arc<Policy>,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
}

impl Fixture {
    pub fn new(h: &dyn Harness, policy_toml: &str) -> Fixture {
        let policy =
            Arc::new(Policy::from_toml_str(policy_toml, "test").expect("valid test policy"));
        let clock = ManualClock::new(T0);
        let store = h.store(&policy, clock.clone());
        Fixture {
            policy,
            store,
            clock,
        }
    }

    pub fn with_policy(h: &dyn Harness, policy: Policy) -> Fixture {
        let policy = Arc::new(policy);
        let clock = ManualClock::new(T0);
        let store = h.store(&policy, clock.clone());
        Fixture {
            policy,
            store,
            clock,
        }
    }

    pub async fn decide_chain(&self, chain: &Chain<'_>, mode: Mode) -> ChainOutcome {
        self.store.decide(chain, mode).await.expect("store decides")
    }

    /// One call of several descriptors on the first tree, each with its cost,
    /// decided as `Limiter::check_descriptors` does (a sum of 0 peeks).
    pub async fn call(
        &self,
        descriptors: &[Vec<(&str, &str)>],
        costs: &[u64],
    ) -> (ChainOutcome, Vec<Target>) {
        let tree = &self.policy.trees()[0];
        let (chain, targets) = tree
            .chain_for_descriptors(descriptors, costs)
            .expect("valid chain");
        let mode = Mode::for_request(chain.total_cost(), false);
        (self.decide_chain(&chain, mode).await, targets)
    }

    pub fn default_policy(h: &dyn Harness) -> Fixture {
        let policy = Arc::new(Policy::default_notifications());
        let clock = ManualClock::new(T0);
        let store = h.store(&policy, clock.clone());
        Fixture {
            policy,
            store,
            clock,
        }
    }

    pub async fn decide_in(
        &self,
        tree: &str,
        descriptors: &[(&str, &str)],
        cost: u64,
        mode: Mode,
    ) -> ChainOutcome {
        let tree = self.policy.tree(tree).expect("tree exists");
        let chain = tree.chain(descriptors, cost).expect("valid chain");
        self.store
            .decide(&chain, mode)
            .await
            .expect("store decides")
    }

    pub async fn decide(
        &self,
        descriptors: &[(&str, &str)],
        cost: u64,
        mode: Mode,
    ) -> ChainOutcome {
        let tree = self.policy.trees()[0].name.clone();
        self.decide_in(&tree, descriptors, cost, mode).await
    }

    pub async fn take(&self, descriptors: &[(&str, &str)], cost: u64) -> ChainOutcome {
        self.decide(descriptors, cost, Mode::Commit).await
    }

    pub async fn peek(&self, descriptors: &[(&str, &str)]) -> ChainOutcome {
        self.decide(descriptors, 0, Mode::Peek).await
    }

    /// Puts the policy `policy_toml` in force as `Limiter::reload` does: the
    /// store carried over by `Store::for_policy` (or kept as it is).
    pub fn reload(&mut self, policy_toml: &str) {
        let policy =
            Arc::new(Policy::from_toml_str(policy_toml, "test").expect("valid test policy"));
        if let Some(store) = self.store.for_policy(&self.policy, &policy) {
            self.store = store;
        }
        self.policy = policy;
    }

    pub fn remaining(outcome: &ChainOutcome) -> Vec<u64> {
        outcome.levels.iter().map(|l| l.remaining).collect()
    }
}

const ERRORS: &[(&str, &str)] = &[("category", "errors")];
const WARNINGS: &[(&str, &str)] = &[("category", "warnings")];

pub async fn admits_up_to_the_limit_then_denies(h: &dyn Harness) {
    let f = Fixture::default_policy(h);
    for i in 0..10 {
        let o = f.take(ERRORS, 1).await;
        assert!(o.allowed, "request {i}: {o:?}");
        assert_eq!(o.reason, Reason::Ok);
        assert_eq!(Fixture::remaining(&o), vec![99 - i, 9 - i]);
    }
    let o = f.take(ERRORS, 1).await;
    assert!(!o.allowed);
    assert_eq!(o.reason, Reason::Limited);
    assert_eq!(o.retry_after, Some(1800 * S));
    assert!(o.levels[0].allowed && !o.levels[1].allowed);
    assert_eq!(o.levels[1].retry_after, Some(1800 * S));
    assert_eq!(o.levels[0].retry_after, None);
}

pub async fn a_category_denial_consumes_nothing(h: &dyn Harness) {
    let f = Fixture::default_policy(h);
    assert!(f.take(ERRORS, 10).await.allowed);
    for _ in 0..5 {
        assert!(!f.take(ERRORS, 1).await.allowed);
    }
    // The global level was not charged by the five denials.
    let peek = f.peek(WARNINGS).await;
    assert_eq!(Fixture::remaining(&peek), vec![90, 10]);
    assert!(f.take(WARNINGS, 10).await.allowed);
}

pub async fn a_global_denial_consumes_no_category(h: &dyn Harness) {
    let f = Fixture::new(
        h,
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 5
window = "1m"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 10
window = "1m"
"#,
    );
    assert!(f.take(WARNINGS, 5).await.allowed);
    let o = f.take(ERRORS, 1).await;
    assert!(
        !o.allowed && !o.levels[0].allowed && o.levels[1].allowed,
        "{o:?}"
    );
    assert_eq!(o.retry_after, Some(60 * S));
    assert_eq!(Fixture::remaining(&f.peek(ERRORS).await), vec![0, 10]);
}

fn two_levels(algorithm: &str) -> String {
    format!(
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 20
window = "10s"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 4
window = "10s"
algorithm = "{algorithm}"
"#
    )
}

pub async fn retry_after_is_exact_for_every_algorithm(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &two_levels(algorithm));
        f.clock.advance_micros(3 * S + 250_000);
        assert!(f.take(ERRORS, 3).await.allowed, "{algorithm}");
        f.clock.advance_micros(2 * S);
        let denied = f.take(ERRORS, 2).await;
        assert!(!denied.allowed, "{algorithm}: {denied:?}");
        let retry = denied.retry_after.expect("limited, not insufficient");
        // A microsecond early it still does not fit; at retry_after it does.
        f.clock.advance_micros(retry - 1);
        assert!(
            !f.decide(ERRORS, 2, Mode::DryRun).await.allowed,
            "{algorithm}: early"
        );
        f.clock.advance_micros(1);
        assert!(
            f.take(ERRORS, 2).await.allowed,
            "{algorithm}: at retry_after {retry}"
        );
    }
}

pub async fn peek_and_dry_run_record_nothing(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &two_levels(algorithm));
        assert!(f.take(ERRORS, 3).await.allowed);
        let before = f.peek(ERRORS).await;
        assert!(before.allowed, "one more unit fits");
        assert_eq!(Fixture::remaining(&before), vec![17, 1], "{algorithm}");
        let dry = f.decide(ERRORS, 1, Mode::DryRun).await;
        assert!(dry.allowed);
        assert_eq!(
            Fixture::remaining(&dry),
            vec![16, 0],
            "a dry run answers like a commit"
        );
        let dry = f.decide(ERRORS, 2, Mode::DryRun).await;
        assert!(!dry.allowed && dry.reason == Reason::Limited);
        assert_eq!(
            f.peek(ERRORS).await,
            before,
            "{algorithm}: nothing recorded"
        );
        assert!(f.take(ERRORS, 1).await.allowed);
        let exhausted = f.peek(ERRORS).await;
        assert!(!exhausted.allowed, "peek says no unit fits");
        assert_eq!(exhausted.reason, Reason::Limited);
        assert!(exhausted.retry_after.is_some());
    }
}

pub async fn cost_beyond_capacity_is_insufficient(h: &dyn Harness) {
    let f = Fixture::default_policy(h);
    let o = f.take(ERRORS, 11).await;
    assert!(!o.allowed);
    assert_eq!(o.reason, Reason::InsufficientCapacity);
    assert_eq!(o.retry_after, None);
    assert!(o.levels[1].insufficient && !o.levels[0].insufficient);
    // Far beyond any level (the Redis store sends costs as u32): insufficient
    // at every level, nothing charged.
    let o = f.take(ERRORS, u64::MAX).await;
    assert_eq!(o.reason, Reason::InsufficientCapacity);
    assert!(o.levels.iter().all(|l| l.insufficient), "{o:?}");
    assert_eq!(Fixture::remaining(&f.peek(ERRORS).await), vec![100, 10]);
}

pub async fn shadow_levels_report_but_never_deny(h: &dyn Harness) {
    let f = Fixture::new(
        h,
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 100
window = "1m"
[[trees.levels]]
name = "user"
by = ["user"]
limit = 2
window = "1m"
shadow = true
"#,
    );
    let user = &[("user", "u1")];
    assert_eq!(f.take(user, 1).await.reason, Reason::Ok);
    assert_eq!(f.take(user, 1).await.reason, Reason::Ok);
    let o = f.take(user, 1).await;
    assert!(o.allowed);
    assert_eq!(o.reason, Reason::Shadow);
    assert!(o.levels[1].shadow && !o.levels[1].allowed);
    assert_eq!(Fixture::remaining(&o), vec![97, 0]);
}

pub async fn overrides_and_optional_levels(h: &dyn Harness) {
    let f = Fixture::new(
        h,
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 2
window = "1m"
overrides = [{ when = { category = "critical" }, limit = 5 }]
[[trees.levels]]
name = "user"
by = ["user"]
limit = 1
window = "1m"
required = false
"#,
    );
    let o = f.take(&[("category", "critical")], 5).await;
    assert!(
        o.allowed && o.levels.len() == 1,
        "optional level skipped: {o:?}"
    );
    assert_eq!(o.levels[0].limit, 5);
    assert!(!f.take(&[("category", "other")], 3).await.allowed);
    let both = &[("category", "other"), ("user", "u")];
    let o = f.take(both, 1).await;
    assert!(o.allowed && o.levels.len() == 2);
    let o = f.take(both, 1).await;
    assert!(!o.allowed && o.levels[0].allowed && !o.levels[1].allowed);
    // The user-level denial left the category untouched: one unit remains.
    assert_eq!(
        Fixture::remaining(&f.peek(&[("category", "other")]).await),
        vec![1]
    );
}

pub async fn windows_roll_over(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &two_levels(algorithm));
        assert!(f.take(ERRORS, 4).await.allowed);
        assert!(!f.take(ERRORS, 1).await.allowed);
        // Two windows on, every algorithm is full again.
        f.clock.advance_micros(20 * S);
        let o = f.peek(ERRORS).await;
        assert_eq!(Fixture::remaining(&o), vec![20, 4], "{algorithm}");
        assert!(
            o.levels.iter().all(|l| l.reset_after == 0),
            "{algorithm}: {o:?}"
        );
    }
}

pub async fn trees_are_independent(h: &dyn Harness) {
    let one = two_levels("sliding_log");
    let other = one.replace("name = \"t\"", "name = \"u\"");
    let f = Fixture::new(h, &format!("{one}\n{other}"));
    assert!(f.decide_in("t", ERRORS, 4, Mode::Commit).await.allowed);
    let o = f.decide_in("u", ERRORS, 4, Mode::Commit).await;
    assert!(o.allowed, "tree u has its own buckets: {o:?}");
}

/// A chain whose buckets each carry their own cost: a denial charges none of
/// them, an admitted commit charges each its own, and a bucket of cost 0 is
/// reported (what is left now) but never charged and never denies.
pub async fn each_bucket_is_charged_its_own_cost(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &two_levels(algorithm));
        let tree = &f.policy.trees()[0];
        let with_costs = |global: u64, category: u64| {
            let mut chain = tree.chain(ERRORS, 1).expect("valid chain");
            chain.buckets[0].cost = global;
            chain.buckets[1].cost = category;
            chain
        };
        let o = f.decide_chain(&with_costs(5, 3), Mode::Commit).await;
        assert!(o.allowed, "{algorithm}: {o:?}");
        assert_eq!(Fixture::remaining(&o), vec![15, 1], "{algorithm}");
        // The category has 1 left: a cost of 2 there denies, and charges
        // neither bucket.
        let o = f.decide_chain(&with_costs(1, 2), Mode::Commit).await;
        assert!(!o.allowed && o.levels[0].allowed && !o.levels[1].allowed);
        assert_eq!(Fixture::remaining(&f.peek(ERRORS).await), vec![15, 1]);
        // Cost 0 at the global: reported as it stands, not charged.
        let o = f.decide_chain(&with_costs(0, 1), Mode::Commit).await;
        assert!(o.allowed, "{algorithm}: {o:?}");
        assert_eq!(Fixture::remaining(&o), vec![15, 0], "{algorithm}");
        // Cost 0 at a full category: it fits (takes nothing) and never denies.
        let o = f.decide_chain(&with_costs(3, 0), Mode::Commit).await;
        assert!(o.allowed && o.levels[1].allowed, "{algorithm}: {o:?}");
        assert_eq!(Fixture::remaining(&o), vec![12, 0], "{algorithm}");
        // A dry run of the same answers the same and records nothing.
        let o = f.decide_chain(&with_costs(2, 0), Mode::DryRun).await;
        assert!(o.allowed);
        assert_eq!(Fixture::remaining(&o), vec![10, 0], "{algorithm}");
        let peek = f.peek(ERRORS).await;
        assert_eq!(Fixture::remaining(&peek), vec![12, 0], "{algorithm}");
        assert!(!peek.allowed, "a peek still asks for one unit everywhere");
    }
}

const EDGE: &str = r#"
domain: edge
descriptors:
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 4
  - key: path
    value: /login
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: blocked
    rate_limit:
      unit: second
      requests_per_unit: 0
"#;

/// An envoyproxy/ratelimit domain as a tree: every bucket a call's
/// descriptors match is decided in one store call — a denial charges none,
/// duplicates are one bucket, a blocking rule denies and charges nothing.
pub async fn an_envoy_domain_decides_a_call_all_or_nothing(h: &dyn Harness) {
    let domain = EnvoyConfig::from_yaml_str(EDGE, "edge.yaml").expect("valid domain");
    let f = Fixture::with_policy(
        h,
        Policy::from_envoy_domains(vec![domain]).expect("valid policy"),
    );
    let login = vec![
        vec![("path", "/login")],
        vec![("remote_address", "10.0.0.1")],
    ];
    let (o, targets) = f.call(&login, &[1, 1]).await;
    assert!(o.allowed, "{o:?}");
    // Buckets in level order: remote_address (rule 0) first.
    assert_eq!(Fixture::remaining(&o), vec![3, 1]);
    assert_eq!(
        targets,
        [
            Target::Buckets(limitree::BucketSet::one(1)),
            Target::Buckets(limitree::BucketSet::one(0))
        ]
    );
    assert!(f.call(&login, &[1, 1]).await.0.allowed);
    let (o, _) = f.call(&login, &[1, 1]).await;
    assert!(!o.allowed && o.reason == Reason::Limited, "{o:?}");
    // The denial charged the address nothing.
    let address = vec![vec![("remote_address", "10.0.0.1")]];
    assert_eq!(Fixture::remaining(&f.call(&address, &[0]).await.0), vec![2]);

    // Two descriptors on one bucket are one bucket, charged their sum.
    let twice = vec![
        vec![("remote_address", "10.0.0.2")],
        vec![("remote_address", "10.0.0.2")],
    ];
    let (o, _) = f.call(&twice, &[2, 2]).await;
    assert!(o.allowed && o.levels.len() == 1, "{o:?}");
    assert_eq!(Fixture::remaining(&o), vec![0]);
    assert!(!f.call(&twice, &[1, 0]).await.0.allowed);

    // A blocking rule denies the call and nothing is charged…
    let blocked = vec![
        vec![("remote_address", "10.0.0.3")],
        vec![("blocked", "yes")],
    ];
    let (o, _) = f.call(&blocked, &[1, 1]).await;
    assert!(
        !o.allowed && o.reason == Reason::InsufficientCapacity,
        "{o:?}"
    );
    assert_eq!(Fixture::remaining(&o), vec![4]);
    // …unless it is asked for nothing (hits_addend 0): then the rest is charged.
    let (o, _) = f.call(&blocked, &[1, 0]).await;
    assert!(o.allowed, "{o:?}");
    assert_eq!(Fixture::remaining(&o), vec![3]);
}

/// `two_levels` with other limits and window.
fn two_levels_with(algorithm: &str, global: u64, category: u64, window: &str) -> String {
    two_levels(algorithm)
        .replace("limit = 20", &format!("limit = {global}"))
        .replace("limit = 4", &format!("limit = {category}"))
        .replace("window = \"10s\"", &format!("window = \"{window}\""))
}

/// A reload that lowers a limit below a bucket's count: the count is kept
/// and read under the new limit, so nothing is admitted until the bucket is
/// under it — exactly at the denial's `retry_after`, not a microsecond
/// before. gcra carries its debt over in units (see the README): the 3 units
/// owed at 2.5 s each are owed at the new 5 s each, which with a burst of 2
/// leaves no room until 10 s have passed, as for the counting algorithms (a
/// debt kept as time, 7.5 s, would read as 1.5 units and admit after 2.5 s).
pub async fn a_reload_reads_kept_counts_under_a_lower_limit(h: &dyn Harness) {
    for (algorithm, global_left, retry) in [
        ("sliding_log", 27, 10 * S),
        ("sliding_window", 27, 16_666_667),
        ("gcra", 27, 10 * S),
        ("fixed_window", 27, 10 * S),
    ] {
        let mut f = Fixture::new(h, &two_levels(algorithm));
        assert!(f.take(ERRORS, 3).await.allowed, "{algorithm}");
        f.reload(&two_levels_with(algorithm, 30, 2, "10s"));
        let o = f.peek(ERRORS).await;
        assert_eq!(
            Fixture::remaining(&o),
            vec![global_left, 0],
            "{algorithm}: {o:?}"
        );
        assert_eq!(
            (o.levels[0].limit, o.levels[1].limit),
            (30, 2),
            "{algorithm}"
        );
        let denied = f.take(ERRORS, 1).await;
        assert!(
            !denied.allowed,
            "{algorithm}: over the new limit: {denied:?}"
        );
        assert_eq!(denied.retry_after, Some(retry), "{algorithm}: {denied:?}");
        f.clock.advance_micros(retry - 1);
        assert!(!f.take(ERRORS, 1).await.allowed, "{algorithm}: a µs early");
        f.clock.advance_micros(1);
        let o = f.take(ERRORS, 1).await;
        assert!(
            o.allowed,
            "{algorithm}: under the new limit at retry_after: {o:?}"
        );
    }
}

/// A reload that doubles the window (10 s → 20 s, both aligned at the
/// fixture's start): sliding_log recounts its entries in the new window,
/// fixed_window and sliding_window keep the count of the window that now
/// starts at the same instant, gcra carries its 3 units owed over to the new
/// 5 s per unit (1 left of 4), and the rescaled debt is kept: 10 s later two
/// units have dripped back (3 left).
pub async fn a_reload_reads_kept_counts_under_a_longer_window(h: &dyn Harness) {
    for (algorithm, category_left) in [
        ("sliding_log", 1),
        ("sliding_window", 1),
        ("gcra", 1),
        ("fixed_window", 1),
    ] {
        let mut f = Fixture::new(h, &two_levels(algorithm));
        f.clock.advance_micros(S);
        assert!(f.take(ERRORS, 3).await.allowed, "{algorithm}");
        f.reload(&two_levels_with(algorithm, 20, 4, "20s"));
        let o = f.peek(ERRORS).await;
        assert_eq!(o.levels[1].window, 20 * S, "{algorithm}");
        assert_eq!(o.levels[1].remaining, category_left, "{algorithm}: {o:?}");
        // The old window's end (11 s) frees nothing any more but gcra's drip.
        f.clock.advance_micros(10 * S);
        let o = f.peek(ERRORS).await;
        let expected = if algorithm == "gcra" { 3 } else { 1 };
        assert_eq!(o.levels[1].remaining, expected, "{algorithm}: {o:?}");
    }
}

/// Same level, same limits, another algorithm: the bucket starts fresh
/// rather than reading another algorithm's state; the unchanged level keeps
/// its count.
pub async fn a_reload_that_changes_the_algorithm_starts_fresh(h: &dyn Harness) {
    for (from, to) in [
        ("sliding_log", "fixed_window"),
        ("fixed_window", "gcra"),
        ("gcra", "sliding_window"),
        ("sliding_window", "sliding_log"),
    ] {
        let mut f = Fixture::new(h, &two_levels(from));
        assert!(f.take(ERRORS, 4).await.allowed, "{from}");
        let changed = two_levels(from).replacen(
            &format!("algorithm = \"{from}\"\n[[trees.levels]]"),
            &format!("algorithm = \"{to}\"\n[[trees.levels]]"),
            1,
        );
        // Only the global level's algorithm changed.
        assert_ne!(changed, two_levels(from));
        f.reload(&changed);
        let o = f.peek(ERRORS).await;
        assert_eq!(Fixture::remaining(&o), vec![20, 0], "{from} → {to}: {o:?}");
    }
}

/// Same level, same limits and algorithm, another `by` key: its buckets
/// start fresh (in Redis the key names the `by` keys), even for the same
/// value.
pub async fn a_reload_that_changes_the_by_keys_starts_fresh(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let mut f = Fixture::new(h, &two_levels(algorithm));
        assert!(f.take(ERRORS, 4).await.allowed, "{algorithm}");
        f.reload(&two_levels(algorithm).replace("by = [\"category\"]", "by = [\"kind\"]"));
        let o = f.peek(&[("kind", "errors")]).await;
        assert_eq!(Fixture::remaining(&o), vec![16, 4], "{algorithm}: {o:?}");
    }
}
