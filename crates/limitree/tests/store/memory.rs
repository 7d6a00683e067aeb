//! The memory store: the conformance suite, plus what only it promises (the
//! bucket cap and idle expiry).

use std::sync::Arc;

use limitree::decision::LevelShare;
use limitree::{Clock, ManualClock, MemoryStore, Mode, Policy, Store};

use crate::conformance::{Fixture, Harness, S};

pub struct Memory;

impl Harness for Memory {
    fn store(&self, policy: &Arc<Policy>, clock: ManualClock) -> Arc<dyn Store> {
        Arc::new(MemoryStore::with_clock(policy, Arc::new(clock)))
    }
}

mod conformance {
    crate::conformance_suite!(super::Memory);
}

const CAPPED: &str = r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 1000000
window = "1m"
[[trees.levels]]
name = "user"
by = ["user"]
limit = 3
window = "1m"
max_buckets = 100
overrides = [{ when = { user = "vip" }, limit = 50 }]
"#;

fn memory_fixture(text: &str) -> (Fixture, Arc<MemoryStore>) {
    let policy = Arc::new(Policy::from_toml_str(text, "test").unwrap());
    let clock = ManualClock::new(crate::support::T0);
    let store = Arc::new(MemoryStore::with_clock(&policy, Arc::new(clock.clone())));
    let fixture = Fixture {
        policy,
        store: store.clone(),
        clock,
    };
    (fixture, store)
}

#[tokio::test]
async fn a_flood_of_new_values_stays_within_the_cap_and_shares_one_overflow_bucket() {
    let (f, store) = memory_fixture(CAPPED);
    let mut overflow_admitted = 0;
    for i in 0..10_000 {
        let user = format!("attacker-{i}");
        let o = f.take(&[("user", &user)], 1).await;
        if i < 100 {
            assert!(o.allowed && !o.levels[1].overflow, "own bucket {i}");
        } else {
            assert!(o.levels[1].overflow, "value {i} past the cap");
            overflow_admitted += u32::from(o.allowed);
        }
    }
    assert_eq!(store.bucket_count(), 100, "memory bounded by max_buckets");
    assert_eq!(
        overflow_admitted, 3,
        "the overflow bucket holds one bucket's limit"
    );
    // Existing buckets keep their own state; override values still get their own.
    let o = f.take(&[("user", "attacker-7")], 1).await;
    assert!(o.allowed && !o.levels[1].overflow && o.levels[1].remaining == 1);
    let o = f.take(&[("user", "vip")], 10).await;
    assert!(
        o.allowed && !o.levels[1].overflow && o.levels[1].limit == 50,
        "{o:?}"
    );
}

#[tokio::test]
async fn idle_buckets_expire_and_make_room() {
    let (f, store) = memory_fixture(CAPPED);
    for i in 0..100 {
        assert!(f.take(&[("user", &format!("u{i}"))], 1).await.allowed);
    }
    assert_eq!(store.bucket_count(), 100);
    // Not idle yet: nothing to drop.
    f.clock.advance_micros(59 * S);
    assert_eq!(store.expire_idle(), 0);
    f.clock.advance_micros(S);
    assert_eq!(store.expire_idle(), 100);
    assert_eq!(store.bucket_count(), 0);
    let o = f.take(&[("user", "newcomer")], 1).await;
    assert!(!o.levels[1].overflow);
}

#[tokio::test]
async fn a_full_level_drops_idle_buckets_before_using_the_overflow_bucket() {
    let (f, store) = memory_fixture(CAPPED);
    for i in 0..100 {
        assert!(f.take(&[("user", &format!("u{i}"))], 1).await.allowed);
    }
    f.clock.advance_micros(61 * S);
    let o = f.take(&[("user", "fresh")], 1).await;
    assert!(o.allowed && !o.levels[1].overflow, "{o:?}");
    assert_eq!(store.bucket_count(), 1);
}

#[tokio::test]
async fn a_store_refuses_a_tree_it_was_not_built_for() {
    let (f, _) = memory_fixture(CAPPED);
    let other = Policy::default_notifications();
    let descriptors = [("category", "x")];
    let chain = other.trees()[0].chain(&descriptors, 1).unwrap();
    let err = f.store.decide(&chain, Mode::Commit).await.unwrap_err();
    assert!(err.to_string().contains("notifications"), "{err}");
}

/// A parent keyed by team, split by fair sharing (2 guarantees + pool per team).
const CAPPED_SPLIT: &str = r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "team"
by = ["team"]
limit = 10
window = "1m"
max_buckets = 50
[[trees.levels]]
name = "category"
by = ["category"]
limit = 1000000
window = "1m"
shares = { a = 3, b = 3 }
"#;

/// A flood of new teams on a split keyed parent: each team's guarantees and
/// pool live with its bucket, so memory stays bounded by `max_buckets`
/// buckets (each with its 2 guarantees and pool); the teams past the cap
/// share the overflow bucket's parts (one team's worth: `a` gets its
/// guarantee of 3 and the pool's 4 there), and idle teams expire with their
/// parts.
#[tokio::test]
async fn a_flood_of_teams_on_a_split_parent_stays_within_the_cap() {
    let (f, store) = memory_fixture(CAPPED_SPLIT);
    let mut overflow_admitted = 0;
    for i in 0..5_000 {
        let team = format!("team-{i}");
        let o = f.take(&[("team", &team), ("category", "a")], 1).await;
        if i < 50 {
            assert!(o.allowed && !o.levels[0].overflow, "own bucket {i}: {o:?}");
        } else {
            assert!(o.levels[0].overflow, "team {i} past the cap");
            overflow_admitted += u32::from(o.allowed);
        }
    }
    // 50 teams and the one category bucket.
    assert_eq!(store.bucket_count(), 51, "memory bounded by max_buckets");
    assert_eq!(
        overflow_admitted, 7,
        "the overflow bucket is split as one team's"
    );
    // An existing team keeps its own parts: 2 left of a's guarantee, the
    // pool's 4 untouched.
    let o = f.take(&[("team", "team-7"), ("category", "a")], 0).await;
    assert!(!o.levels[0].overflow && o.levels[0].remaining == 6, "{o:?}");
    assert_eq!(
        o.levels[1].share,
        Some(LevelShare::Child {
            guaranteed: 3,
            remaining: 2,
            borrowed: 0
        }),
        "{o:?}"
    );
    f.clock.advance_micros(60 * S);
    assert_eq!(
        store.expire_idle(),
        51,
        "idle teams expire with their parts"
    );
    assert_eq!(store.bucket_count(), 0);
}

fn two_levels_of(algorithm: &str) -> String {
    format!(
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 10
window = "1m"
algorithm = "{algorithm}"
[[trees.levels]]
name = "user"
by = ["user"]
limit = 2
window = "1m"
algorithm = "{algorithm}"
"#
    )
}

/// The last admission a bucket reports (through the library's introspection,
/// as `/v1/buckets` reads it) moves when a commit charges the bucket, and on
/// nothing else: not a peek, a dry run, or a denial (of the bucket itself or
/// of another level of its chain).
#[rstest::rstest]
#[case::sliding_log("sliding_log")]
#[case::sliding_window("sliding_window")]
#[case::gcra("gcra")]
#[case::fixed_window("fixed_window")]
#[tokio::test]
async fn the_last_admission_moves_on_admissions_only(#[case] algorithm: &str) {
    let (f, _) = memory_fixture(&two_levels_of(algorithm));
    let limiter = limitree::Limiter::new(Arc::clone(&f.policy), Arc::clone(&f.store));
    let snapshot = limiter.snapshot();
    let tree = &f.policy.trees()[0];
    let since = |level: usize, values: &'static [&'static str]| {
        let snapshot = Arc::clone(&snapshot);
        async move {
            snapshot
                .peek_bucket(tree, level, values)
                .await
                .expect("a peek")
                .since_admission
        }
    };
    let (global, user) = (0, 1);
    assert_eq!(
        since(user, &["a"]).await,
        None,
        "a fresh bucket admitted nothing"
    );
    assert!(f.take(&[("user", "a")], 1).await.allowed);
    let admitted_at = f.clock.now();
    f.clock.advance_micros(5 * S);
    assert_eq!(since(user, &["a"]).await, Some(5 * S));
    assert_eq!(since(global, &[]).await, Some(5 * S));
    // A peek, a dry run and a cost-0 check change nothing.
    assert_eq!(since(user, &["a"]).await, Some(5 * S), "peeking twice");
    f.clock.advance_micros(S);
    assert!(f.decide(&[("user", "a")], 1, Mode::DryRun).await.allowed);
    assert!(f.peek(&[("user", "a")]).await.allowed);
    assert_eq!(since(user, &["a"]).await, Some(6 * S));
    // The next admission moves it (on every level it charged).
    assert!(f.take(&[("user", "a")], 1).await.allowed);
    assert_eq!(since(user, &["a"]).await, Some(0));
    f.clock.advance_micros(3 * S);
    assert_eq!(since(user, &["a"]).await, Some(3 * S));
    assert_eq!(since(global, &[]).await, Some(3 * S));
    // `a` is full: a denial charges nothing and moves nothing, on either level.
    let denied = f.take(&[("user", "a")], 1).await;
    assert!(!denied.allowed, "{denied:?}");
    f.clock.advance_micros(S);
    assert_eq!(since(user, &["a"]).await, Some(4 * S));
    assert_eq!(since(global, &[]).await, Some(4 * S));
    // Another user's admission moves the global level, not `a`.
    assert!(f.take(&[("user", "b")], 1).await.allowed);
    assert_eq!(since(global, &[]).await, Some(0));
    assert_eq!(since(user, &["a"]).await, Some(4 * S));
    assert_eq!(f.clock.now() - admitted_at, 10 * S);
    // The listing reports it too; a reset forgets it.
    let busiest = snapshot.busiest(tree, user, None, 10).await.unwrap();
    let of = |name: &str| {
        busiest
            .buckets
            .iter()
            .find(|b| b.values == [name])
            .map(|b| b.since_admission)
    };
    assert_eq!((of("a"), of("b")), (Some(Some(4 * S)), Some(Some(0))));
    snapshot.reset_bucket(tree, user, &["a"]).await.unwrap();
    assert_eq!(since(user, &["a"]).await, None, "reset");
}

/// A check's answer does not carry it (only peeks do: introspection).
#[tokio::test]
async fn only_a_peek_reports_the_last_admission() {
    let (f, _) = memory_fixture(&two_levels_of("gcra"));
    assert!(f.take(&[("user", "a")], 1).await.allowed);
    for mode in [Mode::Commit, Mode::DryRun] {
        let o = f.decide(&[("user", "a")], 1, mode).await;
        assert!(
            o.levels.iter().all(|l| l.since_admission.is_none()),
            "{mode:?}: {o:?}"
        );
    }
    let o = f.peek(&[("user", "a")]).await;
    assert!(
        o.levels.iter().all(|l| l.since_admission == Some(0)),
        "{o:?}"
    );
}
