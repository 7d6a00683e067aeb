//! The protocol of the one Redis call: what `decide.lua` is sent, what it
//! answers, and the constants both sides share. Read this file and
//! `decide.lua` (beside it) and nothing else to understand a call.
//!
//! # Request: `EVALSHA <sha> <#KEYS> KEYS… ARGV…`
//! One call decides a batch of decisions of one tree ([`encode_call`]). Two
//! index spaces, both 1-based as Lua counts:
//! - **key index**: a bucket's position in `KEYS`. Every bucket the batch
//!   touches is sent once, however many decisions touch it.
//! - **spec index**: a position in the `specs` argument. Every distinct level
//!   spec (algorithm, limit, window, burst, shadow; an override is a spec of
//!   its own) is sent once, however many buckets share it.
//!
//! | arg       | content                                                       |
//! |-----------|---------------------------------------------------------------|
//! | `ARGV[1]` | now in µs (a test clock), or `""`: the script reads Redis `TIME` |
//! | `ARGV[2]` | TTL slack in ms: 0, or [`TEST_TTL_SLACK_MS`] with a test clock |
//! | `ARGV[3]` | specs, [`SPEC_LEN`] bytes each ([`SPEC_FORMAT`]): code, limit, window, burst as doubles, shadow |
//! | `ARGV[4]` | per key index, its spec index (`u16` LE)                      |
//! | `ARGV[5]` | decisions: mode ([`MODE_COMMIT`], [`MODE_DRY_RUN`], [`MODE_PEEK`]), level count `n` (`u8`), number of shared parents `s` (`u8`), per shared parent its level (`u8`, 1-based) and its guarantee's key index (`u16` LE, 0: none), then per level, root first, its key index (`u16` LE) and its bucket's cost (`u32` LE) |
//! | `ARGV[6]` | carries after a reload that changed a split ([`super::carry`]): per parent bucket, its marker key and signature, the marker's TTL, then its targets' and sources' key indexes (see `encode_carry`) |
//!
//! Fair sharing ([`Shares`](crate::policy::Shares)): a shared parent's level
//! carries its pool's key, and the request's guarantee in it (if any) is one
//! more key named in the header; a chain may pass several shared parents
//! (a level between two splits is a child and a parent). The script takes the cost from the guarantee
//! first and the rest from the pool, as [`share_verdict`] does, and answers
//! the level with one record flagged [`FLAG_SHARED`] holding both states.
//!
//! Each level carries its own cost (a bucket's [`Bucket::cost`]): two
//! decisions of a batch may charge one bucket different costs, and the
//! script's per-batch memo is keyed by the probed cost, so it stays exact. A
//! level of cost 0 in a commit or dry run is probed with 0 (it always fits)
//! and never charged. A chain a [blocking rule](Chain::blocked) denies is sent
//! as a dry run: the script charges nothing, and `combine` agrees.
//!
//! Packed binary rather than one argument per number: each argument costs
//! Redis a parse and an object, and the script a Lua string to convert.
//!
//! # Reply: one binary string
//! `now` (a little-endian double), then per decision, per level, root first, a
//! record: flags (one byte: [`FLAG_ALLOWED`], [`FLAG_INSUFFICIENT`],
//! [`FLAG_CHARGED`], [`FLAG_RETRY`]), the state's length (one byte), the
//! bucket's state as that decision saw it, encoded as the key holds it (packed
//! doubles ending with the bucket's last admission, see [`last_admission`], or
//! a sliding_log's [`SUMMARY_FORMAT`] summary; empty for a fresh bucket) and,
//! with [`FLAG_RETRY`] only, a sliding_log denial's retry time (a double).
//!
//! # Who computes what
//! The script decides and charges. The numbers a verdict carries (available,
//! remaining, reset and retry times) are computed here from the returned
//! state with the memory store's own algorithm code ([`algo::decide`]),
//! which costs the client nanoseconds and spares Redis — the resource every
//! instance shares — most of a script call. Only a sliding_log denial's retry
//! time needs the log itself; the script sends it. [`decode_outcome`] then
//! applies the same [`ChainOutcome::combine`] as the memory store and checks
//! that the script charged exactly the levels `combine` charges.
//!
//! # Errors
//! Anything that does not decode, or contradicts the algorithms or
//! `combine`, is a bug on one side or the other: [`StoreError::Protocol`],
//! logged here with `tracing::error!`, never an outage to fall back from.

use std::ops::Range;
use std::sync::Arc;

use arrayvec::ArrayVec;

use super::carry::CarryArg;
use crate::algo::{self, BucketState, BucketView, Verdict};
use crate::chain::{Chain, ChainShare};
use crate::clock::Micros;
use crate::decision::{ChainOutcome, Mode, PartView, ShareVerdict, share_verdict};
use crate::policy::{Algorithm, LimitSpec, MAX_LEVELS};
use crate::store::StoreError;

/// The script itself; its header comment describes the same layout.
pub(super) const DECIDE_LUA: &str = include_str!("decide.lua");

// ---------------------------------------------------------------- constants
// Each is mirrored by a `local NAME = …` line in decide.lua; the test
// `constants_match_decide_lua` reads them back out of the script.

/// Decision mode: charge every level with room if the chain is admitted.
pub(super) const MODE_COMMIT: u8 = b'c';
/// Decision mode: answer as a commit would, charge nothing.
pub(super) const MODE_DRY_RUN: u8 = b'd';
/// Decision mode: the chain costs 0; probe every level with 1, charge nothing.
pub(super) const MODE_PEEK: u8 = b'p';

/// Record flag: the script found room for the probed cost.
pub(super) const FLAG_ALLOWED: u8 = 1;
/// Record flag: the probed cost exceeds what the bucket can ever hold.
pub(super) const FLAG_INSUFFICIENT: u8 = 2;
/// Record flag: the script charged the level.
pub(super) const FLAG_CHARGED: u8 = 4;
/// Record flag: a retry time (a little-endian double) follows the state.
pub(super) const FLAG_RETRY: u8 = 8;
/// Record flag: a shared parent's record (fair sharing): the pool's state,
/// then the guarantee's (its length, then it; empty when the request has no
/// guarantee or it is fresh), and the flags are for the two together.
pub(super) const FLAG_SHARED: u8 = 16;

/// One spec in `ARGV[3]`, as `struct.unpack` reads it: algorithm code (2
/// bytes), limit, window, burst (doubles), shadow (a byte, 1 or 0).
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "Rust packs and reads these bytes by hand; the format is the script's, checked against it by a test"
    )
)]
pub(super) const SPEC_FORMAT: &str = "<c2dddB";
/// Bytes of one spec ([`SPEC_FORMAT`]).
pub(super) const SPEC_LEN: usize = 2 + 3 * 8 + 1;

/// A sliding_log summary (`<key>:m`): entries, units beyond one per entry
/// (`u32`), oldest and newest admission time (doubles), entries at the newest
/// time (`u32`).
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "Rust packs and reads these bytes by hand; the format is the script's, checked against it by a test"
    )
)]
pub(super) const SUMMARY_FORMAT: &str = "<I4I4ddI4d";
/// Bytes of a summary ([`SUMMARY_FORMAT`]).
pub(super) const SUMMARY_LEN: usize = 4 + 4 + 8 + 8 + 4 + 8;

/// Bytes of a decision's header in `ARGV[5]`: mode, level count, and the
/// number of shared parents, each then described in [`DECISION_SHARE_LEN`]
/// bytes.
pub(super) const DECISION_HEADER_LEN: usize = 1 + 1 + 1;
/// Bytes of one shared parent in a decision's header: its level (1-based) and
/// its guarantee's key index (`u16` LE; 0: none).
pub(super) const DECISION_SHARE_LEN: usize = 1 + 2;
/// Bytes of one level of a decision in `ARGV[5]`: key index (`u16`), cost (`u32`).
pub(super) const DECISION_LEVEL_LEN: usize = 2 + 4;

/// Keys live this much longer than their state when the time comes from a test
/// clock: test time and Redis' expiry clock are unrelated.
pub(super) const TEST_TTL_SLACK_MS: u64 = 24 * 3600 * 1000;

/// Most bytes of one decision in `ARGV[5]`.
const MAX_DECISION_LEN: usize =
    DECISION_HEADER_LEN + (DECISION_SHARE_LEN + DECISION_LEVEL_LEN) * MAX_LEVELS;

/// Bytes of the command before the keys and the packed arguments, at most:
/// `EVALSHA`, the 40-digit sha, the key count, `now` and the slack (each a
/// decimal number of at most 20 digits).
const COMMAND_HEAD_LEN: usize = 128;

const _: () = assert!(
    crate::policy::MAX_LIMIT < u32::MAX as u64,
    "decide.lua reads costs as u32"
);

// ------------------------------------------------------------------ request

/// One decision as the script wants it: its buckets' keys, its mode, and each
/// level's spec and cost.
#[derive(Debug)]
pub(super) struct ScriptDecision {
    /// Its buckets' keys, one after the other, each ending at `key_ends[i]`
    /// (one allocation per decision, not one per key). With fair sharing a
    /// shared parent's key is its pool's, and its guarantee's (if any) come
    /// after the levels', in the order of the shared parents.
    keys: String,
    key_ends: ArrayVec<usize, { 2 * MAX_LEVELS }>,
    /// [`MODE_COMMIT`], [`MODE_DRY_RUN`] or [`MODE_PEEK`].
    mode: u8,
    /// Per key, as `keys`.
    specs: ArrayVec<SpecArg, { 2 * MAX_LEVELS }>,
    /// Per level, root first: its bucket's cost.
    costs: ArrayVec<u64, MAX_LEVELS>,
    /// Fair sharing: each shared parent's position (1-based), and whether
    /// its guarantee's key follows the levels' keys.
    shares: ArrayVec<(u8, bool), MAX_LEVELS>,
    /// A reload changed the split of a level of the chain: the old layout's
    /// state to carry into the new one first (see [`super::carry`]; empty,
    /// without allocating, otherwise).
    carry: Vec<ScriptCarry>,
}

/// A [`CarryArg`] as the script wants it (one entry of `ARGV[6]`).
#[derive(Debug)]
struct ScriptCarry {
    marker: String,
    signature: String,
    marker_ttl_ms: u64,
    targets: Vec<(String, SpecArg)>,
    sources: Vec<(String, SpecArg)>,
}

/// A level's spec as the script wants it (one entry of `ARGV[3]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpecArg {
    /// The algorithm's code (`sl`, `sw`, `gc`, `fw`).
    code: &'static str,
    limit: u64,
    window: Micros,
    burst: u64,
    shadow: bool,
}

impl ScriptDecision {
    /// `chain` decided in `mode`, with its keys under `key_prefix`.
    /// Boxed: the decision travels through the batch queue (and the future
    /// carrying it is boxed and moved at every layer), so it moves as one
    /// pointer.
    pub(super) fn new(
        key_prefix: &str,
        chain: &Chain<'_>,
        mode: Mode,
        carry: Vec<CarryArg>,
    ) -> Box<Self> {
        let mut keys = String::new();
        let mut key_ends = ArrayVec::new();
        let tree = &chain.tree.name;
        let spec_arg = |spec: &LimitSpec, shadow: bool| SpecArg {
            code: super::keys::algorithm_code(spec.algorithm),
            limit: spec.limit,
            window: spec.window,
            burst: spec.burst,
            shadow,
        };
        let mut specs: ArrayVec<SpecArg, { 2 * MAX_LEVELS }> = ArrayVec::new();
        for (i, bucket) in chain.buckets.iter().enumerate() {
            match chain.shares.iter().find(|s| s.parent == i) {
                Some(at) => {
                    super::keys::push_pool_key(&mut keys, key_prefix, tree, bucket);
                    specs.push(spec_arg(&at.shares.pool, false));
                }
                None => {
                    super::keys::push_bucket_key(&mut keys, key_prefix, tree, bucket);
                    specs.push(spec_arg(bucket.spec, bucket.level.shadow));
                }
            }
            key_ends.push(keys.len());
        }
        let shares = chain.shares.iter().map(|at| {
            if let Some(part) = at.part {
                let part = &at.shares.parts[part];
                let parent = &chain.buckets[at.parent];
                super::keys::push_guarantee_key(&mut keys, key_prefix, tree, parent, &part.values);
                key_ends.push(keys.len());
                specs.push(spec_arg(&part.spec, false));
            }
            // At most MAX_LEVELS (8) levels: the position fits a byte.
            (at.parent as u8 + 1, at.part.is_some())
        });
        let shares = shares.collect();
        let carry = carry.into_iter().map(|c| {
            let args = |keys: Vec<(String, LimitSpec)>| -> Vec<(String, SpecArg)> {
                keys.into_iter()
                    .map(|(key, spec)| (key, spec_arg(&spec, false)))
                    .collect()
            };
            ScriptCarry {
                marker: c.marker,
                signature: c.signature,
                marker_ttl_ms: c.marker_ttl_ms,
                targets: args(c.targets),
                sources: args(c.sources),
            }
        });
        let carry = carry.collect();
        Box::new(ScriptDecision {
            shares,
            carry,
            keys,
            key_ends,
            mode: match mode {
                // A blocking rule denies the chain: nothing may be charged.
                Mode::Commit if chain.blocked_denies(mode) => MODE_DRY_RUN,
                Mode::Commit => MODE_COMMIT,
                Mode::DryRun => MODE_DRY_RUN,
                Mode::Peek => MODE_PEEK,
            },
            costs: chain.buckets.iter().map(|bucket| bucket.cost).collect(),
            specs,
        })
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.key_ends.iter().copied());
        starts
            .zip(&self.key_ends)
            .map(|(start, &end)| &self.keys[start..end])
    }

    /// Every key the call sends for it, with its spec: its levels' (and
    /// guarantee's) and its carry's.
    fn keys_and_specs(&self) -> impl Iterator<Item = (&str, &SpecArg)> {
        let carried = self.carry.iter().flat_map(|c| {
            c.targets
                .iter()
                .chain(&c.sources)
                .map(|(key, spec)| (key.as_str(), spec))
        });
        self.keys().zip(&self.specs).chain(carried)
    }

    /// Its number of levels (and so of records in its reply).
    pub(super) fn levels(&self) -> usize {
        self.costs.len()
    }
}

/// `batch` cut into runs that each may go in one script call: a call sends
/// each key once, with one spec, so two decisions that give one key different
/// specs — made under two policies, while a reload is taking effect — must go
/// in separate calls, one after the other in batch order. Otherwise the later
/// one would be decided under the earlier one's limits (and its reply would
/// not decode against its own). Outside a reload this is one run.
pub(super) fn runs_without_conflicts(batch: &[Box<ScriptDecision>]) -> Vec<Range<usize>> {
    if batch.len() < 2 {
        return std::iter::once(0..batch.len()).collect();
    }
    let mut runs = Vec::new();
    let mut start = 0;
    let mut spec_of: hashbrown::HashMap<&str, &SpecArg> = hashbrown::HashMap::new();
    for (i, decision) in batch.iter().enumerate() {
        let conflicts = decision
            .keys_and_specs()
            .any(|(key, spec)| spec_of.get(key).is_some_and(|seen| *seen != spec));
        if conflicts {
            runs.push(start..i);
            start = i;
            spec_of.clear();
        }
        for (key, spec) in decision.keys_and_specs() {
            spec_of.entry_ref(key).or_insert(spec);
        }
    }
    runs.push(start..batch.len());
    runs
}

/// The `EVALSHA` of `script_hash` deciding `batch` in order. `now` is a test
/// clock's time, or `None` for the script to read Redis `TIME`.
///
/// Written straight into one command buffer (a `redis::ScriptInvocation`
/// allocates a buffer per argument and then copies them all); the caller
/// handles `NOSCRIPT` as it would.
pub(super) fn encode_call(
    script_hash: &str,
    now: Option<Micros>,
    batch: &[Box<ScriptDecision>],
) -> Result<redis::Cmd, StoreError> {
    // KEYS (each with its spec index), the distinct specs, and per decision
    // its levels' key indexes.
    let mut key_index_of: hashbrown::HashMap<&str, usize> = hashbrown::HashMap::new();
    let mut keys: Vec<(&str, usize)> = Vec::new();
    let mut specs: Vec<&SpecArg> = Vec::new();
    let mut chains: Vec<ArrayVec<usize, { 2 * MAX_LEVELS }>> = Vec::with_capacity(batch.len());
    let mut index_of = |key, spec| {
        let next_key_index = keys.len() + 1;
        *key_index_of.entry_ref(key).or_insert_with(|| {
            // Few distinct specs per batch: a scan beats hashing.
            let spec_index = match specs.iter().position(|s| *s == spec) {
                Some(i) => i + 1,
                None => {
                    specs.push(spec);
                    specs.len()
                }
            };
            keys.push((key, spec_index));
            next_key_index
        })
    };
    // ARGV[6]: each parent bucket's carry once (the first decision's).
    let mut carries = Vec::new();
    let mut carried: Vec<&str> = Vec::new();
    for decision in batch {
        let mut chain = ArrayVec::new();
        for (key, spec) in decision.keys().zip(&decision.specs) {
            chain.push(index_of(key, spec));
        }
        chains.push(chain);
        for c in &decision.carry {
            if !carried.contains(&c.marker.as_str()) {
                carried.push(&c.marker);
                encode_carry(&mut carries, c, &mut index_of)?;
            }
        }
    }

    let key_bytes: usize = keys.iter().map(|(key, _)| key.len()).sum();
    let args = 8 + keys.len();
    let data = COMMAND_HEAD_LEN
        + key_bytes
        + specs.len() * SPEC_LEN
        + keys.len() * 2
        + batch.len() * MAX_DECISION_LEN;
    let mut cmd = redis::Cmd::with_capacity(args + 1, data + carries.len());
    cmd.arg("EVALSHA").arg(script_hash).arg(keys.len());
    for &(key, _) in &keys {
        cmd.arg(key);
    }
    // ARGV[1], ARGV[2]: now and TTL slack.
    match now {
        Some(now) => cmd.arg(now).arg(TEST_TTL_SLACK_MS),
        None => cmd.arg("").arg(0),
    };
    // ARGV[3]: the specs.
    let mut packed = Vec::with_capacity(specs.len() * SPEC_LEN);
    for spec in &specs {
        packed.extend_from_slice(spec.code.as_bytes());
        // Limits, windows and bursts are below 2^53 (the policy checks).
        for n in [spec.limit, spec.window, spec.burst] {
            packed.extend_from_slice(&(n as f64).to_le_bytes());
        }
        packed.push(u8::from(spec.shadow));
    }
    cmd.arg(packed);
    // ARGV[4]: each key's spec index.
    let mut packed = Vec::with_capacity(keys.len() * 2);
    for &(_, spec_index) in &keys {
        packed.extend_from_slice(&index_u16(spec_index)?.to_le_bytes());
    }
    cmd.arg(packed);
    // ARGV[5]: the decisions.
    let mut packed = Vec::with_capacity(batch.len() * MAX_DECISION_LEN);
    for (decision, chain) in batch.iter().zip(&chains) {
        packed.push(decision.mode);
        packed.push(u8::try_from(decision.costs.len()).map_err(|_| too_big())?);
        packed.push(u8::try_from(decision.shares.len()).map_err(|_| too_big())?);
        // The guarantees' keys follow the levels', in order.
        let mut guarantees = chain[decision.costs.len()..].iter();
        for &(at, has_guarantee) in &decision.shares {
            let guarantee = if has_guarantee {
                guarantees.next().copied().unwrap_or(0)
            } else {
                0
            };
            packed.push(at);
            packed.extend_from_slice(&index_u16(guarantee)?.to_le_bytes());
        }
        for (&key_index, &cost) in chain.iter().zip(&decision.costs) {
            packed.extend_from_slice(&index_u16(key_index)?.to_le_bytes());
            // No level holds more than MAX_LIMIT (< 2^32), so any larger cost
            // is answered the same as u32::MAX.
            let cost = u32::try_from(cost).unwrap_or(u32::MAX);
            packed.extend_from_slice(&cost.to_le_bytes());
        }
    }
    cmd.arg(packed);
    cmd.arg(carries);
    Ok(cmd)
}

/// Appends one carry to `ARGV[6]`: the marker key (`u16` LE length, bytes),
/// the signature (`u8` length, bytes), the marker's TTL in ms (a double),
/// the numbers of targets and sources (`u16` LE each), then their key
/// indexes (`u16` LE), targets first, in order.
fn encode_carry<'b>(
    out: &mut Vec<u8>,
    carry: &'b ScriptCarry,
    index_of: &mut impl FnMut(&'b str, &'b SpecArg) -> usize,
) -> Result<(), StoreError> {
    out.extend_from_slice(&index_u16(carry.marker.len())?.to_le_bytes());
    out.extend_from_slice(carry.marker.as_bytes());
    out.push(u8::try_from(carry.signature.len()).map_err(|_| too_big())?);
    out.extend_from_slice(carry.signature.as_bytes());
    // A TTL in ms below 2^53 (windows are).
    out.extend_from_slice(&(carry.marker_ttl_ms as f64).to_le_bytes());
    out.extend_from_slice(&index_u16(carry.targets.len())?.to_le_bytes());
    out.extend_from_slice(&index_u16(carry.sources.len())?.to_le_bytes());
    for (key, spec) in carry.targets.iter().chain(&carry.sources) {
        let index = index_of(key, spec);
        out.extend_from_slice(&index_u16(index)?.to_le_bytes());
    }
    Ok(())
}

fn index_u16(index: usize) -> Result<u16, StoreError> {
    u16::try_from(index).map_err(|_| too_big())
}

/// Cannot happen: a batch holds at most `MAX_BATCH × MAX_LEVELS` buckets.
fn too_big() -> StoreError {
    protocol_error("a batch too large to encode for the decision script".to_owned())
}

/// A reply or request the protocol cannot carry: a bug in `decide.lua` or
/// this file, never an outage. Logged here, loudly, because
/// [`FallbackStore`](crate::store::fallback::FallbackStore) passes it through.
pub(super) fn protocol_error(detail: String) -> StoreError {
    tracing::error!(%detail, "decide.lua protocol violated");
    StoreError::Protocol(detail)
}

/// Whether a failed script call is the script's own fault: a Lua error raised
/// while running `decide.lua` (Redis 7: `ERR user_script:<line>: …`; Redis 6:
/// `ERR Error running script …`), or a reply that is not the one binary
/// string the script returns. Those are bugs ([`StoreError::Protocol`]).
/// Errors Redis raises with their own code keep it and are not counted here:
/// `WRONGTYPE` (a key of ours holding another type, written by someone else),
/// `OOM`, `BUSY`, `READONLY`, Cluster redirections, connection failures.
pub(super) fn is_script_bug(e: &redis::RedisError) -> bool {
    match e.kind() {
        redis::ErrorKind::UnexpectedReturnType => true,
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            e.detail().is_some_and(|detail| {
                detail.starts_with("user_script:")
                    || detail.starts_with("Error running script")
                    || detail.starts_with("Error compiling script")
            })
        }
        _ => false,
    }
}

// -------------------------------------------------------------------- reply

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
    /// A shared parent's guarantee state ([`FLAG_SHARED`]).
    guarantee: &'a [u8],
    retry: Option<Micros>,
}

fn malformed(len: usize) -> StoreError {
    protocol_error(format!(
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
    if flags & !(FLAG_ALLOWED | FLAG_INSUFFICIENT | FLAG_CHARGED | FLAG_RETRY | FLAG_SHARED) != 0 {
        return Err(malformed(len));
    }
    let (state, rest) = rest
        .split_at_checked(usize::from(*state_len))
        .ok_or_else(|| malformed(len))?;
    let (guarantee, rest) = if flags & FLAG_SHARED != 0 {
        let [guarantee_len, rest @ ..] = rest else {
            return Err(malformed(len));
        };
        rest.split_at_checked(usize::from(*guarantee_len))
            .ok_or_else(|| malformed(len))?
    } else {
        (&[][..], rest)
    };
    let (retry, rest) = if flags & FLAG_RETRY != 0 {
        let (retry, rest) = rest.split_at_checked(8).ok_or_else(|| malformed(len))?;
        (Some(integer(retry, len)?), rest)
    } else {
        (None, rest)
    };
    Ok((
        LevelRecord {
            flags: *flags,
            state,
            guarantee,
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
    protocol_error(format!(
        "a {} bucket in Redis holds {state:02x?}, which is not a state of that algorithm",
        super::keys::algorithm_code(algorithm),
    ))
}

/// A fixed_window, sliding_window or gcra state as stored: its numbers as
/// little-endian doubles, in the order of the algorithm's `State` fields, then
/// the time of the bucket's last admission (`decide.lua`'s `FW_FORMAT`,
/// `SW_FORMAT`, `GC_FORMAT`; see [`last_admission`]); empty for a fresh bucket.
fn packed_state(algorithm: Algorithm, state: &[u8]) -> Result<BucketState, StoreError> {
    if state.is_empty() {
        return Ok(BucketState::fresh(algorithm));
    }
    let bad = || bad_state(algorithm, state);
    let fields = packed_fields(algorithm).ok_or_else(bad)?;
    if state.len() != 8 * fields {
        return Err(bad());
    }
    let mut numbers = state
        .chunks_exact(8)
        .map(|n| integer(n, 8).map_err(|_| bad()));
    let mut next = || numbers.next().unwrap_or_else(|| Err(bad()));
    Ok(match algorithm {
        Algorithm::FixedWindow => BucketState::FixedWindow(algo::fixed_window::State {
            start: next()?,
            count: next()?,
        }),
        Algorithm::SlidingWindow => BucketState::SlidingWindow(algo::sliding_window::State {
            start: next()?,
            curr: next()?,
            prev: next()?,
        }),
        Algorithm::Gcra => BucketState::Gcra(algo::gcra::State {
            tat: next()?,
            interval: next()?,
        }),
        Algorithm::SlidingLog => return Err(bad()),
    })
}

/// How many doubles a packed state holds, its last admission included.
fn packed_fields(algorithm: Algorithm) -> Option<usize> {
    match algorithm {
        Algorithm::FixedWindow | Algorithm::Gcra => Some(3),
        Algorithm::SlidingWindow => Some(4),
        Algorithm::SlidingLog => None,
    }
}

/// When the bucket of this state (as a record carries it) last admitted a
/// charge: the last double of a packed state, or of a sliding_log's summary;
/// `None` for a fresh bucket (or one that never admitted).
fn last_admission(algorithm: Algorithm, state: &[u8]) -> Result<Option<Micros>, StoreError> {
    if state.is_empty() {
        return Ok(None);
    }
    let len = match packed_fields(algorithm) {
        Some(fields) => 8 * fields,
        None => SUMMARY_LEN,
    };
    if state.len() != len {
        return Err(bad_state(algorithm, state));
    }
    let last = integer(&state[len - 8..], len).map_err(|_| bad_state(algorithm, state))?;
    Ok((last != 0).then_some(last))
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
        algorithm => algo::decide(&packed_state(algorithm, record.state)?, now, spec, probe),
    };
    let retry_needed = !verdict.allowed && !verdict.insufficient;
    if verdict.allowed != (record.flags & FLAG_ALLOWED != 0)
        || verdict.insufficient != (record.flags & FLAG_INSUFFICIENT != 0)
        || (spec.algorithm == Algorithm::SlidingLog && retry_needed != record.retry.is_some())
    {
        // Cannot happen unless decide.lua and the algorithms disagree: say so
        // rather than hand back numbers that contradict what was recorded.
        return Err(protocol_error(format!(
            "the decision script and the algorithm disagree on a level's verdict \
             (script flags {}, algorithm {verdict:?})",
            record.flags
        )));
    }
    Ok(verdict)
}

/// A shared parent's verdict from its record (the pool's and the guarantee's
/// states), by the memory store's [`share_verdict`]; for sliding_log, the
/// wait is the script's (it searches the logs with [`share_retry`]'s steps).
/// Checked against what the script found.
///
/// [`share_retry`]: crate::decision::share_retry
fn share_verdict_of(
    record: &LevelRecord<'_>,
    now: Micros,
    at: &ChainShare<'_>,
    probe: u64,
) -> Result<ShareVerdict, StoreError> {
    let pool_spec = &at.shares.pool;
    let part = at.part.map(|p| &at.shares.parts[p]);
    let sv = match pool_spec.algorithm {
        Algorithm::SlidingLog => {
            let pool = SummaryView::new(record.state, now, pool_spec, None)?;
            let pool = PartView {
                view: &pool,
                capacity: pool_spec.capacity(),
            };
            let retry = record.retry;
            match part {
                Some(part) => {
                    let g = SummaryView::new(record.guarantee, now, &part.spec, None)?;
                    let g = PartView {
                        view: &g,
                        capacity: part.spec.capacity(),
                    };
                    share_verdict(Some((g, part.guaranteed)), pool, probe, retry)
                }
                None => share_verdict(None, pool, probe, retry),
            }
        }
        algorithm => {
            let pool_state = packed_state(algorithm, record.state)?;
            let g_state = match part {
                Some(_) => Some(packed_state(algorithm, record.guarantee)?),
                None => None,
            };
            algo::with_view(&pool_state, now, pool_spec, |pv| {
                let pool = PartView {
                    view: pv,
                    capacity: pool_spec.capacity(),
                };
                match part.zip(g_state.as_ref()) {
                    Some((part, state)) => algo::with_view(state, now, &part.spec, |gv| {
                        let g = PartView {
                            view: gv,
                            capacity: part.spec.capacity(),
                        };
                        share_verdict(Some((g, part.guaranteed)), pool, probe, None)
                    }),
                    None => share_verdict(None, pool, probe, None),
                }
            })
        }
    };
    let v = &sv.verdict;
    let retry_needed = !v.allowed && !v.insufficient;
    if v.allowed != (record.flags & FLAG_ALLOWED != 0)
        || v.insufficient != (record.flags & FLAG_INSUFFICIENT != 0)
        || (pool_spec.algorithm == Algorithm::SlidingLog && retry_needed != record.retry.is_some())
    {
        return Err(protocol_error(format!(
            "the decision script and share_verdict disagree on a shared level \
             (script flags {}, share_verdict {sv:?})",
            record.flags
        )));
    }
    Ok(sv)
}

/// Builds the outcome from the script's per-level records with the same
/// [`ChainOutcome::combine`] the memory store uses, and checks that the script
/// charged exactly the levels `combine` says must be charged.
pub(super) fn decode_outcome(
    mode: Mode,
    chain: &Chain<'_>,
    reply: &DecisionReply,
) -> Result<ChainOutcome, StoreError> {
    let buckets = &chain.buckets[..];
    let mut verdicts: ArrayVec<Verdict, MAX_LEVELS> = ArrayVec::new();
    let mut charged = 0u32;
    let mut records = reply.records();
    let mut shares: ArrayVec<ShareVerdict, MAX_LEVELS> = ArrayVec::new();
    // In a peek, when each level's bucket last admitted (a shared parent: its
    // pool, which records every admission of the level).
    let mut lasts: ArrayVec<Option<Micros>, MAX_LEVELS> = ArrayVec::new();
    for (i, bucket) in buckets.iter().enumerate() {
        let record = records.next().unwrap_or_else(|| {
            Err(protocol_error(format!(
                "the decision script answered {i} of {} levels",
                buckets.len()
            )))
        })?;
        // What the script probed the level with (a peek probes with 1).
        let probe = bucket.probe(mode);
        let shared = chain.shares.iter().find(|s| s.parent == i);
        if shared.is_some() != (record.flags & FLAG_SHARED != 0) {
            return Err(protocol_error(format!(
                "the decision script's record of level {i} is {}a shared parent's",
                if shared.is_some() { "not " } else { "" }
            )));
        }
        if let Some(at) = shared {
            let sv = share_verdict_of(&record, reply.now, at, probe)?;
            verdicts.push(sv.verdict);
            shares.push(sv);
        } else {
            verdicts.push(level_verdict(&record, reply.now, bucket.spec, probe)?);
        }
        if record.flags & FLAG_CHARGED != 0 {
            charged |= 1 << i;
        }
        if mode == Mode::Peek {
            lasts.push(last_admission(bucket.spec.algorithm, record.state)?);
        }
    }
    if records.next().is_some() {
        return Err(protocol_error(format!(
            "the decision script answered more than {} levels",
            buckets.len()
        )));
    }
    // No overflow bucket in Redis (see the module docs of `redis`).
    let (mut outcome, charge) = ChainOutcome::combine(mode, chain, 0, &verdicts, &shares);
    for (level, last) in outcome.levels.iter_mut().zip(lasts) {
        level.since_admission = last.map(|at| reply.now.saturating_sub(at));
    }
    if charge != charged {
        // Cannot happen unless decide.lua and combine disagree: say so loudly
        // rather than hand back an answer that does not match what was recorded.
        return Err(protocol_error(format!(
            "the decision script and ChainOutcome::combine disagree on which levels to charge \
             (script charged {charged:#b}, combine {charge:#b})"
        )));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const NOW: Micros = 1_795_839_179_412_915;

    /// Two policies (before and after a reload) give one bucket different
    /// limits: their decisions never share a call; the same limits do.
    #[test]
    fn a_key_with_two_specs_splits_the_batch() {
        let policy = |limit: u64| {
            crate::policy::Policy::from_toml_str(
                &format!(
                    "[[trees]]\nname = \"t\"\n[[trees.levels]]\nname = \"global\"\nlimit = {limit}\nwindow = \"1m\"\n"
                ),
                "test",
            )
            .unwrap()
        };
        let (old, new) = (policy(10), policy(5));
        let decision = |policy: &crate::policy::Policy| {
            let chain = policy.trees()[0].chain(&[], 1).unwrap();
            ScriptDecision::new("limitree", &chain, Mode::Commit, Vec::new())
        };
        let batch = vec![
            decision(&old),
            decision(&old),
            decision(&new),
            decision(&old),
        ];
        assert_eq!(runs_without_conflicts(&batch), vec![0..2, 2..3, 3..4]);
        let same = vec![decision(&new), decision(&new)];
        assert_eq!(runs_without_conflicts(&same), vec![0..2]);
    }

    /// A constant as `decide.lua` writes it.
    #[derive(Debug, PartialEq)]
    enum LuaConst {
        Int(u64),
        Str(String),
    }

    /// Every top-level `local NAME = value` of the script whose name is in
    /// capitals: a number, a `'string'` or `string.byte('c')`.
    fn lua_constants(lua: &str) -> std::collections::HashMap<&str, LuaConst> {
        let mut out = std::collections::HashMap::new();
        for line in lua.lines() {
            let Some((name, value)) = line
                .strip_prefix("local ")
                .and_then(|rest| rest.split_once(" = "))
            else {
                continue;
            };
            if !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                continue;
            }
            let value = value.split(" --").next().unwrap_or(value).trim();
            let parsed = if let Some(c) = value
                .strip_prefix("string.byte('")
                .and_then(|v| v.strip_suffix("')"))
            {
                assert_eq!(c.len(), 1, "{line}");
                LuaConst::Int(u64::from(c.as_bytes()[0]))
            } else if let Some(text) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                LuaConst::Str(text.to_owned())
            } else {
                LuaConst::Int(
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("not a constant: {line}")),
                )
            };
            assert!(out.insert(name, parsed).is_none(), "{name} twice");
        }
        out
    }

    /// Bytes a `struct.pack` format of the kinds the protocol uses packs.
    fn packed_len(format: &str) -> usize {
        let format = format.strip_prefix('<').expect("little-endian");
        let mut len = 0;
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            let digits: String =
                std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).collect();
            len += match (c, digits.as_str()) {
                ('d', "") => 8,
                ('B', "") => 1,
                ('I', n) | ('c', n) => n.parse::<usize>().unwrap(),
                _ => panic!("format {format}: {c}{digits}"),
            };
        }
        len
    }

    /// The constants the script and this file share are the same on both
    /// sides, and each length is its format's.
    #[test]
    fn constants_match_decide_lua() {
        let lua = lua_constants(DECIDE_LUA);
        let int = |n: usize| LuaConst::Int(n as u64);
        let shared = [
            ("MODE_COMMIT", int(MODE_COMMIT.into())),
            ("MODE_DRY_RUN", int(MODE_DRY_RUN.into())),
            ("MODE_PEEK", int(MODE_PEEK.into())),
            ("FLAG_ALLOWED", int(FLAG_ALLOWED.into())),
            ("FLAG_INSUFFICIENT", int(FLAG_INSUFFICIENT.into())),
            ("FLAG_CHARGED", int(FLAG_CHARGED.into())),
            ("FLAG_RETRY", int(FLAG_RETRY.into())),
            ("FLAG_SHARED", int(FLAG_SHARED.into())),
            ("SPEC_FORMAT", LuaConst::Str(SPEC_FORMAT.to_owned())),
            ("SPEC_LEN", int(SPEC_LEN)),
            ("SUMMARY_FORMAT", LuaConst::Str(SUMMARY_FORMAT.to_owned())),
            ("SUMMARY_LEN", int(SUMMARY_LEN)),
            ("DECISION_HEADER_LEN", int(DECISION_HEADER_LEN)),
            ("DECISION_LEVEL_LEN", int(DECISION_LEVEL_LEN)),
            ("DECISION_SHARE_LEN", int(DECISION_SHARE_LEN)),
        ];
        for (name, value) in &shared {
            assert_eq!(lua.get(name), Some(value), "{name} in decide.lua");
        }
        assert_eq!(
            lua.len(),
            shared.len(),
            "decide.lua has constants this test does not check: {lua:?}"
        );
        assert_eq!(packed_len(SPEC_FORMAT), SPEC_LEN);
        assert_eq!(packed_len(SUMMARY_FORMAT), SUMMARY_LEN);
    }

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

    /// A fixed_window, sliding_window or gcra state as `decide.lua` packs it.
    fn packed(numbers: &[f64]) -> Vec<u8> {
        numbers.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    /// A sliding_log summary whose last admission is its newest entry.
    fn summary(count: u32, extra: u32, oldest: f64, newest: f64, seq: u32) -> Vec<u8> {
        let mut out = count.to_le_bytes().to_vec();
        out.extend_from_slice(&extra.to_le_bytes());
        out.extend_from_slice(&oldest.to_le_bytes());
        out.extend_from_slice(&newest.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&newest.to_le_bytes());
        out
    }

    fn spec(algorithm: Algorithm, limit: u64, window: Micros) -> LimitSpec {
        LimitSpec::new(algorithm, limit, window, limit)
    }

    #[test]
    fn splits_the_script_reply_per_decision() {
        let a = record(
            5,
            &packed(&[1795839179000000.0, 3.0, 1795839178000000.0]),
            None,
        );
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
            (
                5,
                &packed(&[1795839179000000.0, 3.0, 1795839178000000.0])[..]
            )
        );
        assert_eq!((first[1].flags, first[1].retry), (8, Some(17)));
        let second: Vec<_> = decoded[1].records().map(Result::unwrap).collect();
        assert_eq!((second[0].flags, second[0].state), (1, &b""[..]));
    }

    #[rstest]
    #[case::empty(Vec::new(), vec![1])]
    #[case::state_cut_short(reply(1.0, &[record(1, &packed(&[12.0, 3.0, 12.0]), None)])[..12].to_vec(), vec![1])]
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
            matches!(&err, StoreError::Protocol(m) if m.contains("do not decode")),
            "unexpected error: {err:?}"
        );
    }

    /// Each algorithm's numbers come from its stored state through the
    /// memory store's code; a fresh bucket is an empty state.
    #[rstest]
    #[case::fixed_window_counting(Algorithm::FixedWindow, packed(&[1795839179000000.0, 3.0, 1795839178000000.0]), 1, 7, 6)]
    #[case::fixed_window_fresh(Algorithm::FixedWindow, Vec::new(), 1, 10, 9)]
    #[case::sliding_window(Algorithm::SlidingWindow, packed(&[1795839179000000.0, 4.0, 0.0, 1795839179000000.0]), 1, 6, 5)]
    #[case::gcra_fresh(Algorithm::Gcra, Vec::new(), 1, 10, 9)]
    #[case::gcra_owing(Algorithm::Gcra, packed(&[(NOW + 300_000) as f64, 100_000.0, NOW as f64]), 1, 7, 6)]
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
            guarantee: &[],
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
            guarantee: &[],
            flags: FLAG_RETRY,
            state: &state,
            retry: Some(999_990),
        };
        let verdict = level_verdict(&record, NOW, &spec, 1).unwrap();
        assert!(!verdict.allowed);
        assert_eq!(verdict.retry_after, Some(999_990));
        assert_eq!(verdict.reset_after, 999_995);
    }

    #[rstest]
    #[case::flags_say_denied(Algorithm::FixedWindow, packed(&[1.0, 0.0, 0.0]), 0)]
    #[case::denial_without_retry(Algorithm::SlidingLog, summary(10, 0, 1.0, (NOW - 1) as f64, 1), 0)]
    fn a_record_that_contradicts_its_state_is_an_error(
        #[case] algorithm: Algorithm,
        #[case] state: Vec<u8>,
        #[case] flags: u8,
    ) {
        let spec = spec(algorithm, 10, 1_000_000);
        let record = LevelRecord {
            guarantee: &[],
            flags,
            state: &state,
            retry: None,
        };
        let err = level_verdict(&record, NOW, &spec, 1).unwrap_err();
        assert!(
            matches!(&err, StoreError::Protocol(m) if m.contains("disagree")),
            "{err:?}"
        );
    }

    #[rstest]
    #[case::a_window_for_a_log(Algorithm::SlidingLog, packed(&[12.0, 3.0]))]
    #[case::text(Algorithm::FixedWindow, b"1795839179000000:3".to_vec())]
    #[case::not_whole(Algorithm::FixedWindow, packed(&[12.0, 3.5, 12.0]))]
    #[case::negative(Algorithm::Gcra, packed(&[-12.0, 3.0, 1.0]))]
    #[case::too_few(Algorithm::SlidingWindow, packed(&[12.0, 3.0, 1.0]))]
    #[case::too_many(Algorithm::Gcra, packed(&[12.0, 3.0, 1.0, 1.0]))]
    fn a_state_of_another_shape_is_an_error(#[case] algorithm: Algorithm, #[case] state: Vec<u8>) {
        let spec = spec(algorithm, 10, 1_000_000);
        let record = LevelRecord {
            guarantee: &[],
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

    /// The script must charge exactly what `combine` charges: a commit that
    /// fits everywhere but comes back uncharged is a bug, never an answer.
    #[rstest]
    #[case::charged_nothing(FLAG_ALLOWED, FLAG_ALLOWED)]
    #[case::charged_one_level(FLAG_ALLOWED | FLAG_CHARGED, FLAG_ALLOWED)]
    fn charges_that_differ_from_combine_are_a_protocol_error(
        #[case] root_flags: u8,
        #[case] child_flags: u8,
    ) {
        let policy = crate::policy::Policy::default_notifications();
        let chain = policy.trees()[0]
            .chain(&[("category", "errors")], 1)
            .unwrap();
        let bytes = reply(
            NOW as f64,
            &[
                record(root_flags, b"", None),
                record(child_flags, b"", None),
            ],
        );
        let decoded = decode_reply(bytes, [2].into_iter()).unwrap();
        let err = decode_outcome(Mode::Commit, &chain, &decoded[0]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Protocol(m) if m.contains("which levels to charge")),
            "{err:?}"
        );
        // Charged as combine says: an answer.
        let bytes = reply(
            NOW as f64,
            &[
                record(FLAG_ALLOWED | FLAG_CHARGED, b"", None),
                record(FLAG_ALLOWED | FLAG_CHARGED, b"", None),
            ],
        );
        let decoded = decode_reply(bytes, [2].into_iter()).unwrap();
        let outcome = decode_outcome(Mode::Commit, &chain, &decoded[0]).unwrap();
        assert!(outcome.allowed);
    }

    #[rstest]
    #[case::lua_error_redis_7(
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
        "user_script:1: attempt to index local 't' (a nil value) script: e62b, on @user_script:1.",
        true
    )]
    #[case::lua_error_redis_6(
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
        "Error running script (call to f_e62b): @user_script:1: boom",
        true
    )]
    #[case::reply_of_another_type(redis::ErrorKind::UnexpectedReturnType, "an integer", true)]
    #[case::other_server_error(
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
        "max number of clients reached",
        false
    )]
    #[case::read_only(redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly), "", false)]
    #[case::io(redis::ErrorKind::Io, "connection reset", false)]
    fn script_bugs_are_told_from_outages(
        #[case] kind: redis::ErrorKind,
        #[case] detail: &str,
        #[case] bug: bool,
    ) {
        let e = redis::RedisError::from((kind, "test", detail.to_owned()));
        assert_eq!(is_script_bug(&e), bug, "{e}");
    }
}
