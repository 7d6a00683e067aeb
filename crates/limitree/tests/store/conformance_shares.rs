//! The conformance suite's fair-sharing tests (see
//! `limitree::policy::Shares`): stamped out for every store with the rest of
//! [`crate::conformance_suite!`]. Each property of the README's "Fair sharing"
//! section has its test, for every algorithm, under a global parent and
//! under a keyed one (`by = ["team"]`: each team's bucket is split on its
//! own), and the keyed case has tests of its own with two teams.

use limitree::decision::LevelShare;
use limitree::store::BucketScan;
use limitree::{Chain, ChainOutcome, Micros, Mode, Reason};

use crate::conformance::{Fixture, Harness, S};
use crate::support::ALGORITHMS;

/// Global 10 per 10 s; category ceiling 6; `a` and `b` guaranteed 3 each, so
/// the pool holds 4. `c` and `d` have no guarantee.
pub fn shared(algorithm: &str) -> String {
    format!(
        r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "global"
limit = 10
window = "10s"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 6
window = "10s"
algorithm = "{algorithm}"
shares = {{ a = 3, b = 3 }}
"#
    )
}

/// [`shared`] with the parent keyed by `team`: each team has 10 per 10 s,
/// split into `a` 3, `b` 3 and a pool of 4 of its own. The ceilings (the
/// category level, not keyed by team) span teams.
pub fn keyed(algorithm: &str) -> String {
    shared(algorithm).replace("name = \"global\"\n", "name = \"team\"\nby = [\"team\"]\n")
}

/// A policy for an algorithm: [`shared`] or [`keyed`].
type Layout = fn(&str) -> String;

/// Each layout with each algorithm: (layout, algorithm, its policy). A
/// request names team `x` (see [`cat`]), which a global parent ignores.
fn cases() -> Vec<(&'static str, &'static str, String)> {
    let layouts: [(&str, Layout); 2] = [("global", shared), ("keyed", keyed)];
    layouts
        .iter()
        .flat_map(|&(layout, policy)| ALGORITHMS.iter().map(move |&a| (layout, a, policy(a))))
        .collect()
}

fn cat(value: &str) -> [(&str, &str); 2] {
    in_team("x", value)
}

fn in_team<'a>(team: &'a str, value: &'a str) -> [(&'a str, &'a str); 2] {
    [("team", team), ("category", value)]
}

async fn take(f: &Fixture, value: &str, cost: u64) -> ChainOutcome {
    f.take(&cat(value), cost).await
}

/// Admitted units of `n` requests of cost 1 for `value` (of team `x`).
async fn admitted(f: &Fixture, value: &str, n: u64) -> u64 {
    admitted_in(f, "x", value, n).await
}

/// Admitted units of `n` requests of cost 1 for `value` of `team`.
async fn admitted_in(f: &Fixture, team: &str, value: &str, n: u64) -> u64 {
    let mut got = 0;
    for _ in 0..n {
        if f.take(&in_team(team, value), 1).await.allowed {
            got += 1;
        }
    }
    got
}

fn pool(o: &ChainOutcome) -> Option<u64> {
    match o.levels[0].share {
        Some(LevelShare::Parent { pool_remaining }) => Some(pool_remaining),
        _ => None,
    }
}

fn child(o: &ChainOutcome) -> Option<(u64, u64, u64)> {
    match o.levels.get(1)?.share {
        Some(LevelShare::Child {
            guaranteed,
            remaining,
            borrowed,
        }) => Some((guaranteed, remaining, borrowed)),
        _ => None,
    }
}

/// (1) The parent never admits more than its limit in a window, whatever the
/// mix of values, for every algorithm; (3) no value exceeds its ceiling.
pub async fn shares_never_admit_more_than_the_parent_limit(h: &dyn Harness) {
    for (layout, algorithm, policy) in cases() {
        let f = Fixture::new(h, &policy);
        let mut total = 0;
        for value in ["c", "a", "d", "b", "a", "c"] {
            let got = admitted(&f, value, 8).await;
            assert!(
                got <= 6,
                "{layout} {algorithm}: {value} passed its ceiling: {got}"
            );
            total += got;
        }
        assert_eq!(total, 10, "{layout} {algorithm}: all at one instant");
        // Later in the same window: still nothing more (gcra drips one unit
        // back per second: at most that many).
        f.clock.advance_micros(4 * S);
        let later = admitted(&f, "a", 3).await + admitted(&f, "c", 3).await;
        let drip = if algorithm == "gcra" { 4 } else { 0 };
        assert!(
            later <= drip,
            "{layout} {algorithm}: {later} more within the window"
        );
    }
}

/// (2) A value within its guarantee is never denied because of other values'
/// traffic: noisy values exhaust the pool and `b` its guarantee; `a` still
/// gets its 3, and the reply says none of it was borrowed.
pub async fn a_guarantee_holds_against_other_values_traffic(h: &dyn Harness) {
    for (layout, algorithm, policy) in cases() {
        let f = Fixture::new(h, &policy);
        assert_eq!(
            admitted(&f, "c", 6).await,
            4,
            "{layout} {algorithm}: c borrows the pool"
        );
        assert_eq!(
            admitted(&f, "d", 6).await,
            0,
            "{layout} {algorithm}: pool empty"
        );
        assert_eq!(
            admitted(&f, "b", 6).await,
            3,
            "{layout} {algorithm}: b its guarantee"
        );
        for i in 0..3 {
            let o = take(&f, "a", 1).await;
            assert!(o.allowed, "{layout} {algorithm}: a #{i}: {o:?}");
            assert_eq!(child(&o), Some((3, 2 - i, 0)), "{layout} {algorithm}");
            assert_eq!(pool(&o), Some(0), "{layout} {algorithm}");
            assert_eq!(
                o.levels[0].remaining,
                2 - i,
                "{layout} {algorithm}: guarantee + pool"
            );
        }
        let o = take(&f, "a", 1).await;
        assert!(
            !o.allowed && !o.levels[0].allowed && o.levels[1].allowed,
            "{layout} {algorithm}: {o:?}"
        );
    }
}

/// (4) The pool is shared first come, within ceilings: `a` takes its
/// guarantee and borrows 2 of the pool's 4; its ceiling lets it borrow one
/// more; `c` then finds the last unit, `d` none.
pub async fn the_pool_is_first_come_within_ceilings(h: &dyn Harness) {
    for (layout, algorithm, policy) in cases() {
        let f = Fixture::new(h, &policy);
        let o = take(&f, "a", 5).await;
        assert!(o.allowed, "{layout} {algorithm}: {o:?}");
        assert_eq!(
            child(&o),
            Some((3, 0, 2)),
            "{layout} {algorithm}: 3 guaranteed, 2 borrowed"
        );
        assert_eq!(pool(&o), Some(2), "{layout} {algorithm}");
        // Its ceiling (6) stops `a` at one more although the pool has two.
        assert_eq!(
            admitted(&f, "a", 3).await,
            1,
            "{layout} {algorithm}: ceiling"
        );
        assert_eq!(
            admitted(&f, "c", 3).await,
            1,
            "{layout} {algorithm}: the pool's last unit"
        );
        assert_eq!(admitted(&f, "d", 3).await, 0, "{layout} {algorithm}");
        // b's guarantee is untouched by all of it.
        assert_eq!(admitted(&f, "b", 4).await, 3, "{layout} {algorithm}");
    }
}

/// (5) Values without a guarantee only borrow: their share shows a guarantee
/// of 0 and every unit borrowed; a request with no child bucket at all takes
/// from the pool too. A denial charges nothing, the guarantee included.
pub async fn values_without_a_guarantee_only_borrow(h: &dyn Harness) {
    for (layout, algorithm, policy) in cases() {
        let f = Fixture::new(h, &policy);
        let o = take(&f, "c", 2).await;
        assert!(o.allowed, "{layout} {algorithm}");
        assert_eq!(child(&o), Some((0, 0, 2)), "{layout} {algorithm}");
        assert_eq!(pool(&o), Some(2), "{layout} {algorithm}");
        // `a` asks for 6: its guarantee (3) and the pool (2) cannot give it.
        let denied = take(&f, "a", 6).await;
        assert!(
            !denied.allowed && denied.reason == Reason::Limited,
            "{layout} {algorithm}: {denied:?}"
        );
        assert_eq!(
            child(&denied),
            Some((3, 3, 0)),
            "{layout} {algorithm}: nothing taken"
        );
        assert_eq!(
            pool(&denied),
            Some(2),
            "{layout} {algorithm}: nothing taken"
        );
        let peek = f.peek(&cat("a")).await;
        assert_eq!(
            Fixture::remaining(&peek),
            vec![5, 6],
            "{layout} {algorithm}: a denial charged"
        );
        // A cost beyond what the pool can ever hold, for a value that only
        // borrows, is never possible (its ceiling of 6 would hold it).
        let o = take(&f, "c", 5).await;
        assert_eq!(
            o.reason,
            Reason::InsufficientCapacity,
            "{layout} {algorithm}: {o:?}"
        );
        assert!(
            !o.levels[0].allowed && o.levels[0].insufficient,
            "{layout} {algorithm}: {o:?}"
        );
    }
}

/// `retry_after` is the earliest time at which guarantee plus pool can take
/// the cost: not a microsecond early, and exact, for every algorithm, with
/// the guarantee and the pool drained at different times.
pub async fn a_shared_retry_after_is_exact(h: &dyn Harness) {
    for (layout, algorithm, policy) in cases() {
        for cost in [1, 2, 5] {
            let f = Fixture::new(h, &policy);
            f.clock.advance_micros(S + 250_000);
            assert!(
                take(&f, "c", 4).await.allowed,
                "{layout} {algorithm}: the pool"
            );
            f.clock.advance_micros(3 * S);
            assert!(take(&f, "b", 3).await.allowed, "{layout} {algorithm}");
            assert!(
                take(&f, "a", 3).await.allowed,
                "{layout} {algorithm}: a's guarantee"
            );
            // What gcra's pool dripped back meanwhile goes to `c`.
            admitted(&f, "c", 2).await;
            f.clock.advance_micros(1);
            let denied = f.decide(&cat("a"), cost, Mode::DryRun).await;
            assert!(
                !denied.allowed,
                "{layout} {algorithm}: cost {cost}: {denied:?}"
            );
            let retry: Micros = denied.retry_after.expect("limited, not insufficient");
            f.clock.advance_micros(retry - 1);
            let early = f.decide(&cat("a"), cost, Mode::DryRun).await;
            assert!(
                !early.allowed,
                "{layout} {algorithm}: cost {cost} early ({retry})"
            );
            f.clock.advance_micros(1);
            let at = f.take(&cat("a"), cost).await;
            assert!(
                at.allowed,
                "{layout} {algorithm}: cost {cost} at retry_after {retry}: {at:?}"
            );
        }
    }
}

/// A reload that keeps the split (same guaranteed values; here a higher
/// ceiling) keeps the parts' state: what `a` took from its guarantee and
/// from the pool stays taken, and the parent still admits at most its limit.
pub async fn a_reload_keeps_the_parts_only_for_the_same_split(h: &dyn Harness) {
    for (layout, algorithm, policy) in cases() {
        let mut f = Fixture::new(h, &policy);
        // `a`: 3 from its guarantee, 2 from the pool.
        assert_eq!(admitted(&f, "a", 5).await, 5, "{layout} {algorithm}");
        let before = take(&f, "a", 0).await;
        f.reload(&policy.replace("limit = 6", "limit = 8"));
        let after = take(&f, "a", 0).await;
        assert_eq!(
            child(&after).map(|c| c.1),
            Some(0),
            "{layout} {algorithm}: {after:?}"
        );
        assert_eq!(
            pool(&after),
            pool(&before),
            "{layout} {algorithm}: {after:?}"
        );
        // gcra counts in time (its pool's burst is split), so exact totals
        // are checked for the counting algorithms.
        if algorithm != "gcra" {
            assert_eq!(pool(&after), Some(2), "{layout} {algorithm}: {after:?}");
            // At most 10 in the window: `a` 2 more from the pool, `b` its 3.
            assert_eq!(admitted(&f, "a", 5).await, 2, "{layout} {algorithm}");
            assert_eq!(admitted(&f, "b", 5).await, 3, "{layout} {algorithm}");
            assert_eq!(admitted(&f, "c", 5).await, 0, "{layout} {algorithm}");
        }
    }
}

/// A parent of 100 per 10 s (global, or `by = ["team"]` when `keyed`) above
/// a category level of ceiling 100, with `shares` (a TOML inline table's
/// body; empty: no shares).
fn split_policy(algorithm: &str, keyed: bool, shares: &str) -> String {
    let parent = if keyed {
        "name = \"team\"\nby = [\"team\"]"
    } else {
        "name = \"global\""
    };
    let shares = if shares.is_empty() {
        String::new()
    } else {
        format!("shares = {{ {shares} }}\n")
    };
    format!(
        r#"
[[trees]]
name = "t"
[[trees.levels]]
{parent}
limit = 100
window = "10s"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 100
window = "10s"
algorithm = "{algorithm}"
{shares}"#
    )
}

/// Units admitted for each of `values` (in turn, cost 1, up to 100 each).
async fn admitted_each(f: &Fixture, values: &[&str]) -> Vec<u64> {
    let mut got = Vec::new();
    for value in values {
        got.push(admitted(f, value, 100).await);
    }
    got
}

/// A reload that changes the split carries the parent's used units over
/// (the pool first, then the guarantees), so in the window of the reload the
/// parent never admits more than its limit: 60 of 100 used, then shares
/// `a = 20, b = 20` added: 40 more (each guarantee's 20; the pool of 60 is
/// full). Then, at 70 used, another split (`b = 50`): `b` gets the 30 left;
/// then no shares at all: nothing more. Every algorithm, global and keyed
/// parent, every store.
pub async fn a_reload_that_changes_the_split_carries_the_parents_used_units(h: &dyn Harness) {
    for keyed in [false, true] {
        for algorithm in ALGORITHMS {
            let at = format!("keyed {keyed} {algorithm}");
            let mut f = Fixture::new(h, &split_policy(algorithm, keyed, ""));
            for _ in 0..6 {
                assert!(take(&f, "c", 10).await.allowed, "{at}");
            }
            f.reload(&split_policy(algorithm, keyed, "a = 20, b = 20"));
            let o = take(&f, "c", 0).await;
            assert_eq!(pool(&o), Some(0), "{at}: {o:?}");
            assert_eq!(o.levels[0].remaining, 0, "{at}: {o:?}");
            let o = take(&f, "a", 0).await;
            assert_eq!(child(&o), Some((20, 20, 0)), "{at}: {o:?}");
            assert_eq!(admitted_each(&f, &["c", "a"]).await, [0, 20], "{at}");

            // 80 used now; fresh fixture for the second step at 70 used.
            let mut f = Fixture::new(h, &split_policy(algorithm, keyed, ""));
            for _ in 0..6 {
                assert!(take(&f, "c", 10).await.allowed, "{at}");
            }
            f.reload(&split_policy(algorithm, keyed, "a = 20, b = 20"));
            assert_eq!(admitted(&f, "a", 10).await, 10, "{at}");
            f.reload(&split_policy(algorithm, keyed, "b = 50"));
            let o = take(&f, "b", 0).await;
            assert_eq!(child(&o), Some((50, 30, 0)), "{at}: {o:?}");
            assert_eq!(pool(&o), Some(0), "{at}: {o:?}");
            assert_eq!(
                admitted_each(&f, &["a", "c", "b"]).await,
                [0, 0, 30],
                "{at}"
            );
            f.reload(&split_policy(algorithm, keyed, ""));
            let o = take(&f, "c", 0).await;
            assert_eq!(o.levels[0].remaining, 0, "{at}: {o:?}");
            assert_eq!(admitted_each(&f, &["a", "b", "c"]).await, [0, 0, 0], "{at}");
            // The carried units leave when they would have: after the
            // window the parent is whole again.
            f.clock.advance(std::time::Duration::from_secs(20));
            assert_eq!(admitted(&f, "c", 100).await, 100, "{at}");
        }
    }
}

/// Two sharing levels: `global` 20 per 10 s split for team `a` (6, pool 14);
/// each team's 10 split for category `e` (4, pool 6); categories of 20.
fn two_splits(algorithm: &str) -> String {
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
name = "team"
by = ["team"]
limit = 10
window = "10s"
algorithm = "{algorithm}"
shares = {{ a = 6 }}
[[trees.levels]]
name = "category"
by = ["category"]
limit = 20
window = "10s"
algorithm = "{algorithm}"
shares = {{ e = 4 }}
"#
    )
}

/// Several sharing levels per tree: the level in the middle (`team`) is a
/// child of `global` (team `a` has a guarantee there) and split itself (each
/// team's bucket into `e`'s guarantee and a pool), and its entry reports
/// both. The promises hold at each split: team `b` (no guarantee in
/// `global`) takes its 10 (its own pool, then `e`'s guarantee in it) from
/// `global`'s pool only; team `a` still gets its 10 — 6 from its guarantee,
/// 4 from what the pool has left —; `global` admits 20 in all and team `c`
/// nothing more.
pub async fn several_levels_of_a_tree_give_shares(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &two_splits(algorithm));
        let o = f.take(&in_team("a", "e"), 0).await;
        assert_eq!(pool(&o), Some(14), "{algorithm}: {o:?}");
        assert_eq!(
            o.levels[1].share,
            Some(LevelShare::Middle {
                pool_remaining: 6,
                guaranteed: 6,
                remaining: 6,
                borrowed: 0
            }),
            "{algorithm}: {o:?}"
        );
        assert_eq!(
            o.levels[2].share,
            Some(LevelShare::Child {
                guaranteed: 4,
                remaining: 4,
                borrowed: 0
            }),
            "{algorithm}: {o:?}"
        );
        assert_eq!(admitted_in(&f, "b", "x", 20).await, 6, "{algorithm}");
        assert_eq!(admitted_in(&f, "b", "e", 20).await, 4, "{algorithm}");
        let o = f.take(&in_team("a", "x"), 1).await;
        assert!(o.allowed, "{algorithm}: {o:?}");
        // From `a`'s guarantee in `global` and from team a's own pool.
        assert_eq!(
            o.levels[1].share,
            Some(LevelShare::Middle {
                pool_remaining: 5,
                guaranteed: 6,
                remaining: 5,
                borrowed: 0
            }),
            "{algorithm}: {o:?}"
        );
        assert_eq!(admitted_in(&f, "a", "x", 20).await, 5, "{algorithm}");
        assert_eq!(admitted_in(&f, "a", "e", 20).await, 4, "{algorithm}");
        let o = f.take(&in_team("c", "x"), 1).await;
        assert!(!o.allowed && !o.levels[0].allowed, "{algorithm}: {o:?}");
        assert_eq!(o.levels[0].remaining, 0, "{algorithm}: {o:?}");
    }
}

/// A keyed parent with `overrides`: each bucket is split from its own limit
/// — team `big` (override: 20) into `a` 3, `b` 3 and a pool of 14, any other
/// team (10) into 3, 3 and 4 — and every promise holds per team bucket.
pub async fn an_overridden_parent_bucket_is_split_from_its_own_limit(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let policy = keyed(algorithm).replace("limit = 6", "limit = 20").replace(
            "by = [\"team\"]\n",
            "by = [\"team\"]\noverrides = [{ when = { team = \"big\" }, limit = 20 }]\n",
        );
        let f = Fixture::new(h, &policy);
        let o = f.take(&in_team("big", "c"), 0).await;
        assert_eq!(pool(&o), Some(14), "{algorithm}: {o:?}");
        assert_eq!(o.levels[0].limit, 20, "{algorithm}: {o:?}");
        let o = f.take(&in_team("x", "c"), 0).await;
        assert_eq!(pool(&o), Some(4), "{algorithm}: {o:?}");
        // (5) `c` only borrows; (2) `a` and `b` keep their guarantees.
        assert_eq!(admitted_in(&f, "big", "c", 30).await, 14, "{algorithm}");
        assert_eq!(admitted_in(&f, "big", "a", 30).await, 3, "{algorithm}");
        assert_eq!(admitted_in(&f, "big", "b", 30).await, 3, "{algorithm}");
        assert_eq!(admitted_in(&f, "x", "c", 30).await, 4, "{algorithm}");
        assert_eq!(admitted_in(&f, "x", "a", 30).await, 3, "{algorithm}");
        assert_eq!(admitted_in(&f, "x", "b", 30).await, 3, "{algorithm}");
        // (1) Each team's bucket admitted exactly its own limit.
        let o = f.take(&in_team("big", "a"), 0).await;
        assert_eq!(o.levels[0].remaining, 0, "{algorithm}: {o:?}");
    }
}

/// A child that repeats its parent's `by` keys: teams of 10 per 10 s, the
/// child by team and category (a ceiling of 6 per team and category) with
/// `errors` of team `a` guaranteed 4 — in team a's bucket only (pool 6);
/// team b's bucket is all pool (10).
pub async fn a_guarantee_of_a_repeated_key_lives_in_its_parent_bucket(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let policy = format!(
            r#"
[[trees]]
name = "t"
[[trees.levels]]
name = "team"
by = ["team"]
limit = 10
window = "10s"
algorithm = "{algorithm}"
[[trees.levels]]
name = "category"
by = ["team", "category"]
limit = 6
window = "10s"
algorithm = "{algorithm}"
overrides = [{{ when = {{ team = "a", category = "errors" }}, guaranteed = 4 }}]
"#
        );
        let f = Fixture::new(h, &policy);
        let o = f.take(&in_team("a", "errors"), 0).await;
        assert_eq!(pool(&o), Some(6), "{algorithm}: {o:?}");
        assert_eq!(child(&o), Some((4, 4, 0)), "{algorithm}: {o:?}");
        let o = f.take(&in_team("b", "errors"), 0).await;
        assert_eq!(pool(&o), Some(10), "{algorithm}: {o:?}");
        assert_eq!(child(&o), Some((0, 0, 0)), "{algorithm}: {o:?}");
        // Team a: `info` borrows the pool (6, also its ceiling), `errors`
        // still has its 4. Team b: `errors` 6 (its ceiling), `info` the 4
        // left of b's 10.
        assert_eq!(admitted_in(&f, "a", "info", 20).await, 6, "{algorithm}");
        assert_eq!(admitted_in(&f, "a", "errors", 20).await, 4, "{algorithm}");
        assert_eq!(admitted_in(&f, "b", "errors", 20).await, 6, "{algorithm}");
        assert_eq!(admitted_in(&f, "b", "info", 20).await, 4, "{algorithm}");
        assert_eq!(admitted_in(&f, "a", "warnings", 20).await, 0, "{algorithm}");
    }
}

/// A reload that adds shares under a keyed parent with an override carries
/// each team's used units into its own split: team `big` (20) used 15, so
/// its pool of 14 is full and `a`'s guarantee holds 1 (5 more in all);
/// team `x` (10) used 6, pool 4 full, `a` holds 2 (4 more in all).
pub async fn a_carry_splits_each_parent_bucket_by_its_own_limit(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let whole = keyed(algorithm).replace("limit = 6", "limit = 20").replace(
            "by = [\"team\"]\n",
            "by = [\"team\"]\noverrides = [{ when = { team = \"big\" }, limit = 20 }]\n",
        );
        let mut f = Fixture::new(h, &whole.replace("shares = { a = 3, b = 3 }\n", ""));
        // Other categories per team: a category's ceiling spans teams.
        for (team, category, used) in [("big", "c", 15), ("x", "d", 6)] {
            assert!(
                f.take(&in_team(team, category), used).await.allowed,
                "{algorithm}"
            );
        }
        f.reload(&whole);
        for (team, pool_left, a_left) in [("big", 0, 2), ("x", 0, 1)] {
            let o = f.take(&in_team(team, "a"), 0).await;
            assert_eq!(pool(&o), Some(pool_left), "{algorithm} {team}: {o:?}");
            assert_eq!(
                child(&o).map(|c| c.1),
                Some(a_left),
                "{algorithm} {team}: {o:?}"
            );
        }
        for (team, a, b) in [("big", 2, 3), ("x", 1, 3)] {
            assert_eq!(
                admitted_in(&f, team, "c", 10).await,
                0,
                "{algorithm} {team}"
            );
            assert_eq!(
                admitted_in(&f, team, "a", 10).await,
                a,
                "{algorithm} {team}"
            );
            assert_eq!(
                admitted_in(&f, team, "b", 10).await,
                b,
                "{algorithm} {team}"
            );
        }
    }
}

/// Keyed parent, two teams: (1) each team's bucket admits at most its own
/// limit, and (2, 5) one team's traffic — its pool drained, its guarantees
/// used up — takes nothing from another team's guarantees or pool: team `y`
/// then finds all of its own, and each reply names the team's bucket.
pub async fn a_team_never_takes_another_teams_guarantees_or_pool(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &keyed(algorithm));
        assert_eq!(
            admitted_in(&f, "x", "c", 8).await,
            4,
            "{algorithm}: x's pool"
        );
        assert_eq!(
            admitted_in(&f, "x", "d", 2).await,
            0,
            "{algorithm}: x's pool is empty"
        );
        assert_eq!(admitted_in(&f, "x", "b", 4).await, 3, "{algorithm}: x's b");
        assert_eq!(admitted_in(&f, "x", "a", 4).await, 3, "{algorithm}: x's a");
        // Team y's pool is whole: `d` borrows all 4 of it.
        let o = f.take(&in_team("y", "d"), 1).await;
        assert!(o.allowed, "{algorithm}: {o:?}");
        assert_eq!(
            (pool(&o), child(&o)),
            (Some(3), Some((0, 0, 1))),
            "{algorithm}"
        );
        assert_eq!(
            admitted_in(&f, "y", "d", 7).await,
            3,
            "{algorithm}: y's pool"
        );
        // y's guarantees are whole although x used its own and y's pool is gone.
        for i in 0..3 {
            let o = f.take(&in_team("y", "a"), 1).await;
            assert!(o.allowed, "{algorithm}: y's a #{i}: {o:?}");
            assert_eq!(child(&o), Some((3, 2 - i, 0)), "{algorithm}");
            assert_eq!(pool(&o), Some(0), "{algorithm}");
        }
        assert_eq!(admitted_in(&f, "y", "b", 4).await, 3, "{algorithm}: y's b");
        // Each team has taken its 10, and nothing more fits in either.
        for (team, value) in [("x", "a"), ("x", "d"), ("y", "b"), ("y", "c")] {
            let o = f.take(&in_team(team, value), 1).await;
            assert!(
                !o.allowed && !o.levels[0].allowed,
                "{algorithm}: {team} {value}: {o:?}"
            );
        }
    }
}

/// Keyed parent: (4) each team's pool is first come within ceilings, and
/// (3) a ceiling (the category level, not keyed by team) spans teams while
/// a pool does not. A denial in one team charges nothing in any.
pub async fn each_team_has_its_own_pool_within_shared_ceilings(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &keyed(algorithm));
        let o = f.take(&in_team("x", "a"), 5).await;
        assert!(o.allowed, "{algorithm}: {o:?}");
        assert_eq!(
            (child(&o), pool(&o)),
            (Some((3, 0, 2)), Some(2)),
            "{algorithm}"
        );
        // y's pool is whole; a's ceiling (6, across teams) leaves y's `a` one unit,
        // which comes from y's own guarantee.
        let o = f.take(&in_team("y", "a"), 1).await;
        assert!(o.allowed, "{algorithm}: {o:?}");
        assert_eq!(
            (child(&o), pool(&o)),
            (Some((3, 2, 0)), Some(4)),
            "{algorithm}"
        );
        let o = f.take(&in_team("y", "a"), 1).await;
        assert!(
            !o.allowed && o.levels[0].allowed && !o.levels[1].allowed,
            "{algorithm}: the ceiling denies: {o:?}"
        );
        // That denial took nothing from y's guarantee or pool.
        let peek = f.take(&in_team("y", "b"), 0).await;
        assert_eq!(pool(&peek), Some(4), "{algorithm}: {peek:?}");
        let peek = f.take(&in_team("y", "a"), 0).await;
        assert_eq!(child(&peek).map(|c| c.1), Some(2), "{algorithm}: {peek:?}");
        // `c` borrows y's whole pool first come, then x's last two units (its
        // ceiling of 6 holds both).
        assert_eq!(admitted_in(&f, "y", "c", 6).await, 4, "{algorithm}");
        assert_eq!(admitted_in(&f, "x", "c", 6).await, 2, "{algorithm}");
        assert_eq!(
            admitted_in(&f, "x", "d", 2).await,
            0,
            "{algorithm}: x's pool"
        );
        assert_eq!(
            admitted_in(&f, "y", "d", 2).await,
            0,
            "{algorithm}: y's pool"
        );
        // b's guarantees are untouched in both teams.
        assert_eq!(admitted_in(&f, "x", "b", 4).await, 3, "{algorithm}");
        assert_eq!(admitted_in(&f, "y", "b", 4).await, 3, "{algorithm}");
    }
}

/// Keyed parent: a split team bucket has no state of its own, only its parts;
/// it is still listed (also when only a guarantee holds state, or only the
/// pool) and an operator's reset of one team empties its parts, not
/// another team's.
pub async fn a_split_team_is_listed_and_reset_with_its_parts(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(h, &keyed(algorithm));
        assert!(
            f.take(&in_team("x", "a"), 2).await.allowed,
            "{algorithm}: x's a, from its guarantee"
        );
        assert!(
            f.take(&in_team("y", "c"), 1).await.allowed,
            "{algorithm}: y's c, from the pool"
        );
        let tree = &f.policy.trees()[0];
        let scan = || BucketScan {
            tree,
            level_index: 0,
            prefix: None,
            max_buckets: 10,
        };
        let mut listed = f.store.scan_buckets(scan()).await.expect("scan").buckets;
        listed.sort();
        assert_eq!(listed, [["x"], ["y"]], "{algorithm}");
        let x = Chain::one_bucket(tree, 0, &["x"]).expect("a bucket");
        assert_eq!(f.store.reset(&x).await.expect("reset"), 1, "{algorithm}");
        let listed = f.store.scan_buckets(scan()).await.expect("scan").buckets;
        assert_eq!(listed, [["y"]], "{algorithm}: x is gone");
        let o = f.take(&in_team("x", "a"), 0).await;
        assert_eq!(
            (child(&o), pool(&o)),
            (Some((3, 3, 0)), Some(4)),
            "{algorithm}: x reset"
        );
        let o = f.take(&in_team("y", "a"), 0).await;
        assert_eq!(
            (child(&o), pool(&o)),
            (Some((3, 3, 0)), Some(3)),
            "{algorithm}: y kept"
        );
    }
}

/// A level split by fair sharing reports its last admission (in a peek)
/// whichever part gave the units — a value's guarantee alone, or the pool —
/// since its pool stands for the level; a denial moves nothing. Every
/// algorithm.
pub async fn a_shared_parent_reports_admissions_from_any_part(h: &dyn Harness) {
    for algorithm in ALGORITHMS {
        let f = Fixture::new(
            h,
            &format!(
                "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"global\"\nlimit = 10\n\
                 window = \"1m\"\nalgorithm = \"{algorithm}\"\n[[trees.levels]]\n\
                 name = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"1m\"\n\
                 algorithm = \"{algorithm}\"\nshares = {{ errors = 4 }}\n"
            ),
        );
        let since = async || f.peek(&[("category", "other")]).await.levels[0].since_admission;
        assert_eq!(since().await, None, "{algorithm}: fresh");
        // Within the guarantee of `errors`: the pool gives nothing.
        assert!(
            f.take(&[("category", "errors")], 2).await.allowed,
            "{algorithm}"
        );
        f.clock.advance_micros(2 * S);
        assert_eq!(
            since().await,
            Some(2 * S),
            "{algorithm}: the guarantee gave"
        );
        // A value without a guarantee takes from the pool.
        assert!(
            f.take(&[("category", "other")], 1).await.allowed,
            "{algorithm}"
        );
        f.clock.advance_micros(S);
        assert_eq!(since().await, Some(S), "{algorithm}: the pool gave");
        // Past the pool (6, 1 taken): denied, nothing moves.
        assert!(
            !f.take(&[("category", "other")], 10).await.allowed,
            "{algorithm}"
        );
        assert_eq!(since().await, Some(S), "{algorithm}: a denial");
    }
}
