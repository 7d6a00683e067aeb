//! Named table cases per algorithm: a script of (time, cost) steps, each with the
//! verdict it must get. Times are offsets from an instant aligned to every window
//! used here, so fixed windows start at offset 0.

use rstest::rstest;

use super::*;

const T0: Micros = 1_700_000_000_000_000;
const MS: Micros = 1_000;
const S: Micros = 1_000_000;

/// What one step must produce: `Ok(remaining)` or `Err(retry_after)`; `None`
/// retry means insufficient capacity.
#[derive(Debug, Clone, Copy)]
enum Want {
    Ok(u64),
    Denied(Micros),
    Insufficient,
}
use Want::{Denied, Insufficient, Ok as Admit};

fn spec(algorithm: Algorithm, limit: u64, window: Micros, burst: Option<u64>) -> LimitSpec {
    LimitSpec::new(algorithm, limit, window, burst.unwrap_or(limit))
}

/// Runs `steps` of (offset from T0, cost, expected) against a fresh bucket.
fn run(spec: LimitSpec, steps: &[(Micros, u64, Want)]) {
    let mut state = BucketState::fresh(spec.algorithm);
    for (i, &(at, cost, want)) in steps.iter().enumerate() {
        let now = T0 + at;
        let v = decide(&state, now, &spec, cost);
        match want {
            Admit(remaining) => {
                assert!(
                    v.allowed,
                    "step {i} (t+{at}µs, cost {cost}): expected admit, got {v:?}"
                );
                assert_eq!(v.remaining, remaining, "step {i}: remaining, {v:?}");
                assert_eq!(v.retry_after, None);
                charge(&mut state, now, &spec, cost);
                assert_eq!(
                    available(&state, now, &spec),
                    remaining,
                    "step {i}: available after charge"
                );
            }
            Denied(retry) => {
                assert!(
                    !v.allowed && !v.insufficient,
                    "step {i}: expected denial, got {v:?}"
                );
                assert_eq!(v.retry_after, Some(retry), "step {i}: retry_after, {v:?}");
                // Exact, never early: at retry it fits, a microsecond before it does not.
                assert!(
                    decide(&state, now + retry, &spec, cost).allowed,
                    "step {i}: not allowed at retry"
                );
                assert!(
                    !decide(&state, now + retry - 1, &spec, cost).allowed,
                    "step {i}: allowed before retry"
                );
            }
            Insufficient => {
                assert!(
                    !v.allowed && v.insufficient && v.retry_after.is_none(),
                    "step {i}: {v:?}"
                );
            }
        }
    }
}

#[rstest]
#[case::fills_then_denies_until_the_oldest_leaves(&[
    (0, 1, Admit(2)), (0, 1, Admit(1)), (0, 1, Admit(0)), (0, 1, Denied(10 * S)),
])]
#[case::oldest_entry_leaves_exactly_at_its_window_end(&[
    (0, 1, Admit(2)), (4 * S, 1, Admit(1)), (8 * S, 1, Admit(0)),
    (9 * S, 1, Denied(S)), (10 * S, 1, Admit(0)), (10 * S, 1, Denied(4 * S)),
])]
#[case::large_cost_waits_for_enough_entries(&[
    (0, 2, Admit(1)), (5 * S, 1, Admit(0)), (6 * S, 2, Denied(4 * S)), (6 * S, 3, Denied(9 * S)),
])]
#[case::cost_above_limit_is_insufficient(&[(0, 4, Insufficient), (0, 3, Admit(0))])]
#[case::rolls_fully_after_a_window(&[(0, 3, Admit(0)), (10 * S, 3, Admit(0))])]
#[case::zero_cost_always_fits(&[(0, 3, Admit(0)), (0, 0, Admit(0))])]
fn sliding_log(#[case] steps: &[(Micros, u64, Want)]) {
    run(spec(Algorithm::SlidingLog, 3, 10 * S, None), steps);
}

#[rstest]
#[case::fills_then_waits_for_the_window_end(&[
    (2 * S, 1, Admit(2)), (2 * S, 2, Admit(0)), (2 * S, 1, Denied(8 * S)), (10 * S, 1, Admit(2)),
])]
#[case::allows_twice_the_limit_across_a_boundary(&[
    (10 * S - 1, 3, Admit(0)), (10 * S - 1, 1, Denied(1)), (10 * S, 3, Admit(0)),
])]
#[case::cost_above_limit_is_insufficient(&[(0, 4, Insufficient)])]
fn fixed_window(#[case] steps: &[(Micros, u64, Want)]) {
    run(spec(Algorithm::FixedWindow, 3, 10 * S, None), steps);
}

#[rstest]
#[case::burst_then_one_per_interval(&[
    (0, 1, Admit(2)), (0, 2, Admit(0)), (0, 1, Denied(S)), (S, 1, Admit(0)), (S, 1, Denied(S)),
])]
#[case::larger_cost_waits_longer(&[(0, 3, Admit(0)), (0, 2, Denied(2 * S)), (2 * S, 2, Admit(0))])]
#[case::refills_to_burst_not_beyond(&[(0, 3, Admit(0)), (60 * S, 3, Admit(0)), (60 * S, 1, Denied(S))])]
#[case::cost_above_burst_is_insufficient(&[(0, 4, Insufficient), (0, 3, Admit(0))])]
fn gcra(#[case] steps: &[(Micros, u64, Want)]) {
    // 10 per 10s: one unit per second, at most 3 at once.
    run(spec(Algorithm::Gcra, 10, 10 * S, Some(3)), steps);
}

#[test]
fn gcra_rounds_the_interval_up() {
    // 3 per second: 333_334 µs per unit, never faster than the limit.
    let s = spec(Algorithm::Gcra, 3, S, None);
    assert_eq!(s.emission_interval(), 333_334);
    // After one second only 2.99… units have dripped back: 2 are available.
    run(
        s,
        &[
            (0, 3, Admit(0)),
            (0, 1, Denied(333_334)),
            (S, 2, Admit(0)),
            (S, 1, Denied(2)),
        ],
    );
}

/// The case: 8 of 10 per minute taken, then a reload to 5 per minute.
/// Kept as time the debt would read as 4 of 5 and admit one; carried over in
/// units it is 8 over a limit of 5, and admits once 4 have been repaid at the
/// new rate. A partly repaid unit counts as owed.
#[test]
fn gcra_carries_its_debt_over_in_units_when_the_interval_changes() {
    let ten = spec(Algorithm::Gcra, 10, 60 * S, None);
    let five = spec(Algorithm::Gcra, 5, 60 * S, None);
    let mut state = BucketState::fresh(Algorithm::Gcra);
    charge(&mut state, T0, &ten, 8);
    prune(&mut state, T0, &five);
    assert_eq!(available(&state, T0, &five), 0);
    // 8 owed at 12 s: full again at 96 s, room for 1 at 96 − 4·12 = 48 s.
    assert_eq!(retry_after(&state, T0, &five, 1), 48 * S);
    assert_eq!(idle_at(&state, &five), T0 + 96 * S);

    // Half a unit repaid at the old rate still counts as a whole one owed.
    let mut state = BucketState::fresh(Algorithm::Gcra);
    charge(&mut state, T0, &ten, 8);
    prune(&mut state, T0 + 3 * S, &five);
    assert_eq!(idle_at(&state, &five), T0 + 3 * S + 8 * 12 * S);
    // Once rescaled it stays as it is under the same spec.
    let before = state.clone();
    prune(&mut state, T0 + 4 * S, &five);
    assert_eq!(state, before);
    // A bucket owing nothing is left as it is.
    let mut state = BucketState::fresh(Algorithm::Gcra);
    charge(&mut state, T0, &ten, 1);
    let before = state.clone();
    prune(&mut state, T0 + 10 * S, &five);
    assert_eq!(state, before);
}

#[rstest]
// Previous window full (10), current empty: at mid-window the estimate is 5.
#[case::previous_window_decays(&[
    (0, 10, Admit(0)), (15 * S, 5, Admit(0)), (15 * S, 1, Denied(S)), (16 * S, 1, Admit(0)),
])]
// Current window holds the limit: nothing until the next window, then prev decays.
#[case::full_current_window_waits_into_the_next(&[
    (5 * S, 10, Admit(0)), (5 * S, 1, Denied(6 * S)), (11 * S, 1, Admit(0)),
])]
#[case::empty_windows_forget(&[(0, 10, Admit(0)), (20 * S, 10, Admit(0))])]
#[case::cost_above_limit_is_insufficient(&[(0, 11, Insufficient)])]
fn sliding_window(#[case] steps: &[(Micros, u64, Want)]) {
    run(spec(Algorithm::SlidingWindow, 10, 10 * S, None), steps);
}

#[rstest]
#[case::sliding_log(Algorithm::SlidingLog, 10 * S)]
#[case::fixed_window(Algorithm::FixedWindow, 10 * S)]
#[case::gcra(Algorithm::Gcra, 10 * S)]
#[case::sliding_window(Algorithm::SlidingWindow, 20 * S)]
fn reset_after_counts_to_full_and_idle_matches(
    #[case] algorithm: Algorithm,
    #[case] full_after: Micros,
) {
    let s = spec(algorithm, 10, 10 * S, None);
    let mut state = BucketState::fresh(algorithm);
    assert_eq!(reset_after(&state, T0, &s, 0), 0);
    assert_eq!(idle_at(&state, &s), 0);
    let v = decide(&state, T0, &s, 10);
    assert_eq!(v.reset_after, full_after);
    charge(&mut state, T0, &s, 10);
    assert_eq!(reset_after(&state, T0, &s, 0), full_after);
    assert_eq!(idle_at(&state, &s), T0 + full_after);
    assert_eq!(available(&state, T0 + full_after, &s), 10);
    assert!(available(&state, T0 + full_after - MS, &s) < 10);
}

#[rstest]
#[case::sliding_log(Algorithm::SlidingLog)]
#[case::fixed_window(Algorithm::FixedWindow)]
#[case::gcra(Algorithm::Gcra)]
#[case::sliding_window(Algorithm::SlidingWindow)]
fn clock_going_backwards_never_frees_capacity(#[case] algorithm: Algorithm) {
    let s = spec(algorithm, 5, 10 * S, None);
    let mut state = BucketState::fresh(algorithm);
    charge(&mut state, T0 + 15 * S, &s, 5);
    for back in [S, 5 * S, 15 * S] {
        assert_eq!(
            available(&state, T0 + 15 * S - back, &s),
            0,
            "{back}µs back"
        );
    }
}

proptest::proptest! {
    /// `fit` (what `MemoryStore::admit_chain` asks) gives `decide`'s answer,
    /// and both are `cost <= available` — gcra's `fits` multiplies where
    /// `available` divides. Random charges first, so states are reachable ones.
    #[test]
    fn fit_agrees_with_decide_and_available(
        algorithm in proptest::sample::select(vec![
            Algorithm::SlidingLog, Algorithm::SlidingWindow, Algorithm::Gcra, Algorithm::FixedWindow,
        ]),
        limit in 1u64..50,
        window in 1u64..5_000_000,
        extra_burst in 0u64..20,
        charges in proptest::collection::vec((0u64..2_000_000, 0u64..8), 0..20),
        probe_at in 0u64..3_000_000,
        cost in 0u64..80,
    ) {
        let burst = (algorithm == Algorithm::Gcra).then_some(limit + extra_burst);
        let spec = spec(algorithm, limit, window, burst);
        let mut state = BucketState::fresh(algorithm);
        let mut now = T0;
        for (dt, c) in charges {
            now += dt;
            if decide(&state, now, &spec, c).allowed {
                charge(&mut state, now, &spec, c);
            }
        }
        let at = now + probe_at;
        let f = fit(&state, at, &spec, cost);
        let v = decide(&state, at, &spec, cost);
        proptest::prop_assert_eq!(
            (f.allowed, f.insufficient, f.retry_after),
            (v.allowed, v.insufficient, v.retry_after)
        );
        proptest::prop_assert_eq!(
            f.allowed,
            cost <= spec.capacity() && cost <= available(&state, at, &spec)
        );
    }
}
