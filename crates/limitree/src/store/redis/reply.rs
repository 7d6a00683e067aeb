//! The decision script's reply, and each level's verdict computed from it.
//!
//! `decide.lua` decides and charges; for each level of each decision it returns
//! flags (allowed, insufficient, charged) and the bucket's state as that
//! decision saw it, exactly as Redis stores it. The numbers a verdict carries
//! (available, remaining, reset and retry times) are computed here from that
//! state with the memory store's own algorithm code ([`algo::decide`]), which
//! costs the client nanoseconds and spares Redis — the resource every instance
//! shares — most of a script call. Only a sliding_log denial's retry time needs
//! the log itself; the script sends it.

use std::ops::Range;
use std::sync::Arc;

use crate::algo::{self, BucketState, BucketView, Verdict};
use crate::clock::Micros;
use crate::policy::{Algorithm, LimitSpec};
use crate::store::StoreError;

/// A level's flags: the script found room for the probed cost.
const ALLOWED: u8 = 1;
/// The probed cost exceeds what the bucket can ever hold.
const INSUFFICIENT: u8 = 2;
/// The script charged the level.
pub(super) const CHARGED: u8 = 4;
/// A retry time (a little-endian double) follows the state.
const RETRY: u8 = 8;

/// Bytes of a sliding_log summary (`<I4I4ddI4` in `decide.lua`).
const SUMMARY_LEN: usize = 28;

/// One decision's part of the reply: Redis' `now` and its levels' records,
/// root first (a range of the whole reply, which the batch's decisions share).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DecisionReply {
    pub now: Micros,
    reply: Arc<Vec<u8>>,
    records: Range<usize>,
}

/// One level's record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LevelRecord<'a> {
    pub flags: u8,
    state: &'a [u8],
    retry: Option<Micros>,
}

fn malformed(len: usize) -> StoreError {
    StoreError::Unavailable(format!(
        "the decision script returned {len} bytes that do not decode as its reply"
    ))
}

/// An integer the script sent as a double: below 2^53 and whole, or damage.
fn integer(bytes: &[u8], len: usize) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| malformed(len))?;
    let value = f64::from_le_bytes(bytes);
    if value.fract() != 0.0 || !(0.0..=9_007_199_254_740_992.0).contains(&value) {
        return Err(malformed(len));
    }
    Ok(value as u64)
}

/// Splits one level's record off the front of `bytes`.
fn next_record<'a>(bytes: &'a [u8], len: usize) -> Result<(LevelRecord<'a>, &'a [u8]), StoreError> {
    let [flags, state_len, rest @ ..] = bytes else {
        return Err(malformed(len));
    };
    if flags & !(ALLOWED | INSUFFICIENT | CHARGED | RETRY) != 0 {
        return Err(malformed(len));
    }
    let (state, rest) = rest
        .split_at_checked(usize::from(*state_len))
        .ok_or_else(|| malformed(len))?;
    let (retry, rest) = if flags & RETRY != 0 {
        let (retry, rest) = rest.split_at_checked(8).ok_or_else(|| malformed(len))?;
        (Some(integer(retry, len)?), rest)
    } else {
        (None, rest)
    };
    Ok((
        LevelRecord {
            flags: *flags,
            state,
            retry,
        },
        rest,
    ))
}

/// Splits the script's reply into one reply per decision, for decisions of
/// `levels` levels each.
pub(super) fn decode_reply(
    reply: Vec<u8>,
    levels: impl ExactSizeIterator<Item = usize>,
) -> Result<Vec<DecisionReply>, StoreError> {
    let reply = Arc::new(reply);
    let len = reply.len();
    let (head, mut rest) = reply.split_at_checked(8).ok_or_else(|| malformed(len))?;
    let now = integer(head, len)?;
    let mut replies = Vec::with_capacity(levels.len());
    for n in levels {
        let start = len - rest.len();
        for _ in 0..n {
            rest = next_record(rest, len)?.1;
        }
        replies.push(DecisionReply {
            now,
            reply: Arc::clone(&reply),
            records: start..len - rest.len(),
        });
    }
    if !rest.is_empty() {
        return Err(malformed(len));
    }
    Ok(replies)
}

impl DecisionReply {
    /// Its levels' records, root first (already checked by [`decode_reply`]).
    pub(super) fn records(&self) -> impl Iterator<Item = Result<LevelRecord<'_>, StoreError>> {
        let mut rest = &self.reply[self.records.clone()];
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(next_record(rest, rest.len()).map(|(record, tail)| {
                rest = tail;
                record
            }))
        })
    }
}

fn bad_state(algorithm: Algorithm, state: &[u8]) -> StoreError {
    StoreError::Unavailable(format!(
        "a {} bucket in Redis holds {:?}, which is not a state of that algorithm",
        super::keys::algorithm_code(algorithm),
        String::from_utf8_lossy(state)
    ))
}

/// A fixed_window, sliding_window or gcra state as stored: its numbers in
/// decimal, `:`-separated (`decide.lua` writes them); empty for a fresh bucket.
fn text_state(algorithm: Algorithm, state: &[u8]) -> Result<BucketState, StoreError> {
    if state.is_empty() {
        return Ok(BucketState::fresh(algorithm));
    }
    let bad = || bad_state(algorithm, state);
    let text = std::str::from_utf8(state).map_err(|_| bad())?;
    let mut numbers = text.split(':').map(|n| n.parse::<u64>().map_err(|_| bad()));
    let mut next = || numbers.next().unwrap_or_else(|| Err(bad()));
    let parsed = match algorithm {
        Algorithm::FixedWindow => BucketState::FixedWindow(algo::fixed_window::State {
            start: next()?,
            count: next()?,
        }),
        Algorithm::SlidingWindow => BucketState::SlidingWindow(algo::sliding_window::State {
            start: next()?,
            curr: next()?,
            prev: next()?,
        }),
        Algorithm::Gcra => BucketState::Gcra(algo::gcra::State { tat: next()? }),
        Algorithm::SlidingLog => return Err(bad()),
    };
    if numbers.next().is_some() {
        return Err(bad());
    }
    Ok(parsed)
}

/// A sliding_log seen through its summary (entries, units beyond one per
/// entry, newest admission time), as `decide.lua` keeps it beside the log.
struct SummaryView {
    now: Micros,
    window: Micros,
    limit: u64,
    count: u64,
    used: u64,
    newest: Micros,
    /// The script's answer for the probed cost, when it denied it.
    retry: Option<Micros>,
}

impl SummaryView {
    fn new(
        state: &[u8],
        now: Micros,
        spec: &LimitSpec,
        retry: Option<Micros>,
    ) -> Result<Self, StoreError> {
        let (count, extra, newest) = if state.is_empty() {
            (0, 0, 0)
        } else {
            let bad = || bad_state(Algorithm::SlidingLog, state);
            if state.len() != SUMMARY_LEN {
                return Err(bad());
            }
            let u32_at = |at: usize| {
                u64::from(u32::from_le_bytes(
                    state[at..at + 4].try_into().unwrap_or_default(),
                ))
            };
            let newest = integer(&state[16..24], state.len()).map_err(|_| bad())?;
            (u32_at(0), u32_at(4), newest)
        };
        Ok(SummaryView {
            now,
            window: spec.window,
            limit: spec.limit,
            count,
            used: count + extra,
            newest,
            retry,
        })
    }
}

/// As `algo::sliding_log::View`, from the summary.
impl BucketView for SummaryView {
    fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    fn retry_after(&self, _cost: u64) -> Micros {
        // Present whenever it is asked for: checked in `level_verdict`.
        self.retry.unwrap_or(self.window)
    }

    fn reset_after(&self, charged: u64) -> Micros {
        let newest = if charged > 0 {
            self.newest.max(self.now)
        } else if self.count == 0 {
            return 0;
        } else {
            self.newest
        };
        (newest + self.window).saturating_sub(self.now)
    }
}

/// The verdict of one level, probed with `probe` at `now`, from its record;
/// checked against what the script found.
pub(super) fn level_verdict(
    record: &LevelRecord<'_>,
    now: Micros,
    spec: &LimitSpec,
    probe: u64,
) -> Result<Verdict, StoreError> {
    let verdict = match spec.algorithm {
        Algorithm::SlidingLog => {
            let view = SummaryView::new(record.state, now, spec, record.retry)?;
            algo::verdict(&view, spec.capacity(), probe)
        }
        algorithm => algo::decide(&text_state(algorithm, record.state)?, now, spec, probe),
    };
    let retry_needed = !verdict.allowed && !verdict.insufficient;
    if verdict.allowed != (record.flags & ALLOWED != 0)
        || verdict.insufficient != (record.flags & INSUFFICIENT != 0)
        || (spec.algorithm == Algorithm::SlidingLog && retry_needed != record.retry.is_some())
    {
        // Cannot happen unless decide.lua and the algorithms disagree: say so
        // rather than hand back numbers that contradict what was recorded.
        tracing::error!(
            ?verdict,
            flags = record.flags,
            "decide.lua and algo disagree on a level"
        );
        return Err(StoreError::Unavailable(
            "the decision script and the algorithm disagree on a level's verdict".to_owned(),
        ));
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const NOW: Micros = 1_795_839_179_412_915;

    fn record(flags: u8, state: &[u8], retry: Option<f64>) -> Vec<u8> {
        let mut out = vec![flags, state.len() as u8];
        out.extend_from_slice(state);
        if let Some(r) = retry {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out
    }

    fn reply(now: f64, records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = now.to_le_bytes().to_vec();
        for r in records {
            out.extend_from_slice(r);
        }
        out
    }

    fn summary(count: u32, extra: u32, oldest: f64, newest: f64, seq: u32) -> Vec<u8> {
        let mut out = count.to_le_bytes().to_vec();
        out.extend_from_slice(&extra.to_le_bytes());
        out.extend_from_slice(&oldest.to_le_bytes());
        out.extend_from_slice(&newest.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out
    }

    fn spec(algorithm: Algorithm, limit: u64, window: Micros) -> LimitSpec {
        LimitSpec {
            algorithm,
            limit,
            window,
            burst: limit,
        }
    }

    #[test]
    fn splits_the_script_reply_per_decision() {
        let a = record(5, b"1795839179000000:3", None);
        let b = record(8, &summary(2, 0, 1.0, 2.0, 1), Some(17.0));
        let c = record(1, b"", None);
        let bytes = reply(NOW as f64, &[a.clone(), b.clone(), c.clone()]);
        let decoded = decode_reply(bytes, [2, 1].into_iter()).unwrap();
        assert_eq!(decoded.len(), 2);
        assert!(decoded.iter().all(|d| d.now == NOW));
        let first: Vec<_> = decoded[0].records().map(Result::unwrap).collect();
        assert_eq!(first.len(), 2);
        assert_eq!(
            (first[0].flags, first[0].state),
            (5, &b"1795839179000000:3"[..])
        );
        assert_eq!((first[1].flags, first[1].retry), (8, Some(17)));
        let second: Vec<_> = decoded[1].records().map(Result::unwrap).collect();
        assert_eq!((second[0].flags, second[0].state), (1, &b""[..]));
    }

    #[rstest]
    #[case::empty(Vec::new(), vec![1])]
    #[case::state_cut_short(reply(1.0, &[record(1, b"12:3", None)])[..12].to_vec(), vec![1])]
    #[case::retry_missing(reply(1.0, &[record(8, b"", None)]), vec![1])]
    #[case::bytes_left_over(reply(1.0, &[record(1, b"", None), record(1, b"", None)]), vec![1])]
    #[case::unknown_flags(reply(1.0, &[record(16, b"", None)]), vec![1])]
    #[case::now_not_an_integer(reply(1.5, &[record(1, b"", None)]), vec![1])]
    #[case::now_not_a_number(reply(f64::NAN, &[record(1, b"", None)]), vec![1])]
    #[case::retry_negative(reply(1.0, &[record(8, b"", Some(-1.0))]), vec![1])]
    #[case::retry_too_large(reply(1.0, &[record(8, b"", Some(1e300))]), vec![1])]
    fn rejects_anything_else(#[case] bytes: Vec<u8>, #[case] levels: Vec<usize>) {
        let err = decode_reply(bytes, levels.into_iter()).unwrap_err();
        assert!(
            err.to_string().contains("do not decode"),
            "unexpected error: {err}"
        );
    }

    /// Each algorithm's numbers come from its stored state through the
    /// memory store's code; a fresh bucket is an empty state.
    #[rstest]
    #[case::fixed_window_counting(Algorithm::FixedWindow, b"1795839179000000:3".to_vec(), 1, 7, 6)]
    #[case::fixed_window_fresh(Algorithm::FixedWindow, Vec::new(), 1, 10, 9)]
    #[case::sliding_window(Algorithm::SlidingWindow, b"1795839179000000:4:0".to_vec(), 1, 6, 5)]
    #[case::gcra_fresh(Algorithm::Gcra, Vec::new(), 1, 10, 9)]
    #[case::sliding_log(
        Algorithm::SlidingLog,
        summary(3, 2, 1.795839179e15, 1.7958391794e15, 1),
        1,
        5,
        4
    )]
    fn numbers_come_from_the_state(
        #[case] algorithm: Algorithm,
        #[case] state: Vec<u8>,
        #[case] flags: u8,
        #[case] available: u64,
        #[case] remaining: u64,
    ) {
        let spec = spec(algorithm, 10, 1_000_000);
        let record = LevelRecord {
            flags,
            state: &state,
            retry: None,
        };
        let verdict = level_verdict(&record, NOW, &spec, 1).unwrap();
        assert!(verdict.allowed);
        assert_eq!(
            (verdict.available, verdict.remaining),
            (available, remaining)
        );
    }

    #[test]
    fn a_sliding_log_denial_takes_the_scripts_retry_time() {
        let spec = spec(Algorithm::SlidingLog, 2, 1_000_000);
        let state = summary(2, 0, (NOW - 10) as f64, (NOW - 5) as f64, 1);
        let record = LevelRecord {
            flags: RETRY,
            state: &state,
            retry: Some(999_990),
        };
        let verdict = level_verdict(&record, NOW, &spec, 1).unwrap();
        assert!(!verdict.allowed);
        assert_eq!(verdict.retry_after, Some(999_990));
        assert_eq!(verdict.reset_after, 999_995);
    }

    #[rstest]
    #[case::flags_say_denied(Algorithm::FixedWindow, b"1:0".to_vec(), 0)]
    #[case::denial_without_retry(Algorithm::SlidingLog, summary(10, 0, 1.0, (NOW - 1) as f64, 1), 0)]
    fn a_record_that_contradicts_its_state_is_an_error(
        #[case] algorithm: Algorithm,
        #[case] state: Vec<u8>,
        #[case] flags: u8,
    ) {
        let spec = spec(algorithm, 10, 1_000_000);
        let record = LevelRecord {
            flags,
            state: &state,
            retry: None,
        };
        let err = level_verdict(&record, NOW, &spec, 1).unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
    }

    #[rstest]
    #[case::text_for_a_log(Algorithm::SlidingLog, b"12:3".to_vec())]
    #[case::letters(Algorithm::FixedWindow, b"12:x".to_vec())]
    #[case::too_few(Algorithm::SlidingWindow, b"12:3".to_vec())]
    #[case::too_many(Algorithm::Gcra, b"12:3".to_vec())]
    fn a_state_of_another_shape_is_an_error(#[case] algorithm: Algorithm, #[case] state: Vec<u8>) {
        let spec = spec(algorithm, 10, 1_000_000);
        let record = LevelRecord {
            flags: 1,
            state: &state,
            retry: None,
        };
        let err = level_verdict(&record, NOW, &spec, 1).unwrap_err();
        assert!(
            err.to_string().contains("not a state of that algorithm"),
            "{err}"
        );
    }
}
