//! The Redis store: many limitree instances share buckets in one Redis (standalone
//! or Cluster), with the same decisions as the memory store.
//!
//! # One script call decides a chain (or a batch of chains)
//! A chain is decided inside **one** Lua script call (`decide.lua`, run with
//! EVALSHA; `RedisStore::call` loads it again with [`redis::Script`] on `NOSCRIPT`
//! after a restart or `SCRIPT FLUSH`). Redis runs a script to completion before
//! any other command, so evaluating every level, applying the all-or-nothing
//! rule and charging happen with nothing in between: two instances can never
//! both see room and both charge it. Checking in one round trip and charging in
//! another (what limitador does) over-admits under concurrency. The script
//! mirrors [`MemoryStore::decide_chain`](super::MemoryStore::decide_chain) and
//! [`ChainOutcome::combine`] exactly. It returns, per level, what it found and
//! the bucket's state as that decision saw it; each level's numbers are
//! computed here from that state by the memory store's own algorithm code
//! (`reply.rs`), and the outcome by the same `combine`, which also
//! cross-checks which levels the script charged.
//!
//! Decisions for the same tree that arrive while a call for it is in flight
//! go together in the next call (see `batch.rs`): the script decides them one
//! after the other at the same `now`, each atomically and exactly as if it had
//! been a call of its own, while Redis pays the cost of a call (and of loading
//! a shared bucket such as a global level) once per batch.
//!
//! Needs Redis 6.0 or later (the script uses `SET … KEEPTTL`); tested on 7.0.
//!
//! # Time
//! `now` is read from Redis `TIME` inside the script: one clock for every
//! instance, so windows and retry times agree however far the instances' clocks
//! drift. (Tests pass their own time, see [`RedisConfig::clock_override`].)
//!
//! # Keys and memory
//! See [`keys`] for the layout: every key of a tree sits under the hash tag
//! `{<key_prefix>:<tree>}`, so a Cluster keeps a tree in one slot and the
//! script may touch all its levels. Every key is written with a TTL equal to the
//! time its state goes idle ([`crate::algo::idle_at`]), so idle buckets disappear
//! by themselves. That TTL is what bounds memory in Redis: the memory store's
//! per-level `max_buckets` cap and its overflow bucket are **not** applied here
//! (counting a level's live buckets would cost a scan or an index per decision);
//! a flood of distinct values costs one small key each until its window passes.
//!
//! # Failures
//! Every call is bounded by [`RedisConfig::timeout`] and fails with
//! [`StoreError::Timeout`]; connection and server errors become
//! [`StoreError::Unavailable`]. The connection is made on first use if the store
//! was built with [`RedisStore::lazy`], and remade (with backoff) when it drops,
//! so a store outlives Redis restarts. A connection that has stayed silent for
//! ten timeouts (at least 1 s) is dropped and made again too: a peer that
//! vanished without a reset never makes it fail.

mod batch;
mod config;
mod connection;
pub mod keys;
mod reply;

use arrayvec::ArrayVec;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

pub use config::{
    DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, RedisConfig, RedisTarget, check_url, redact_url,
    url_with_password,
};

use self::batch::Batcher;
pub use self::connection::Connection;
use self::reply::{CHARGED, DecisionReply, decode_reply, level_verdict};
use super::{BoxFuture, Store, StoreError};
use crate::algo::Verdict;
use crate::chain::{Chain, Link};
use crate::decision::{ChainOutcome, LevelInput, Mode};
use crate::policy::MAX_LEVELS;

/// The decision script; see the module docs and the comments in the file.
const DECIDE_LUA: &str = include_str!("decide.lua");

/// Keys live this much longer than their state when the time comes from a test
/// clock: test time and Redis' expiry clock are unrelated.
const TEST_TTL_SLACK_MS: u64 = 24 * 3600 * 1000;

/// How long Redis may stay silent (every call timing out, no reply at all)
/// before the connection is considered dead and remade: ten timeouts, at least
/// a second.
fn silence_limit(timeout: std::time::Duration) -> std::time::Duration {
    (timeout * 10).max(std::time::Duration::from_secs(1))
}

/// Most bytes per decision in the script's decisions argument: mode, cost
/// (u32), number of levels, and a `u16` bucket index per level.
const DECISION_LEN: usize = 1 + 4 + 1 + 2 * MAX_LEVELS;

/// Bytes per level in the script's levels argument: algorithm code, limit,
/// window and burst as doubles, shadow.
const LEVEL_LEN: usize = 2 + 3 * 8 + 1;

const _: () = assert!(
    crate::policy::MAX_LIMIT < u32::MAX as u64,
    "decide.lua reads costs as u32"
);

/// A [`Store`] whose buckets live in Redis. See the module docs.
#[derive(Debug)]
pub struct RedisStore {
    config: RedisConfig,
    /// Set on the first successful connection; retried on the next call while
    /// Redis is unreachable; dropped (and so remade) when it has gone silent.
    connection: parking_lot::Mutex<Option<Connection>>,
    /// One connection attempt at a time; the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    /// When the store was built: the origin of `last_reply`.
    started: Instant,
    /// Milliseconds after `started` of the last reply from Redis (or of the
    /// last reconnection): see [`RedisStore::note_timeout`].
    last_reply: AtomicU64,
    script: redis::Script,
    /// Concurrent decisions of a tree share a script call (see [`batch`]).
    batcher: Batcher<Box<Prepared>, DecisionReply>,
}

/// One decision as the script wants it: its buckets' keys and its arguments.
#[derive(Debug)]
struct Prepared {
    /// Its buckets' keys, one after the other, each ending at `key_ends[i]`.
    keys: String,
    key_ends: ArrayVec<usize, MAX_LEVELS>,
    /// `c` commit, `d` dry run, `p` peek (as `decide.lua` reads it).
    mode: u8,
    cost: u64,
    levels: ArrayVec<LevelArgs, MAX_LEVELS>,
}

impl Prepared {
    fn keys(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.key_ends.iter().copied());
        starts
            .zip(&self.key_ends)
            .map(|(start, &end)| &self.keys[start..end])
    }
}

/// A level as the script wants it: algorithm code, limit, window, burst,
/// shadow.
type LevelArgs = (&'static str, u64, u64, u64, u8);

impl RedisStore {
    /// Connects now (within the configured timeout) and returns the store.
    pub async fn connect(config: RedisConfig) -> Result<RedisStore, StoreError> {
        let store = RedisStore::lazy(config)?;
        store.bounded(store.connection()).await?;
        Ok(store)
    }

    /// A store that connects on its first call, so it can be built without a
    /// runtime and before Redis is up. Fails only on a bad configuration.
    pub fn lazy(config: RedisConfig) -> Result<RedisStore, StoreError> {
        config.validate().map_err(StoreError::Unavailable)?;
        Ok(RedisStore {
            config,
            connection: parking_lot::Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            last_reply: AtomicU64::new(0),
            script: redis::Script::new(DECIDE_LUA),
            batcher: Batcher::default(),
        })
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        if let Some(connection) = self.connection.lock().clone() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.connection.lock().clone() {
            return Ok(connection);
        }
        let connection = Connection::open(&self.config.target, self.config.timeout)
            .await
            .map_err(|e| self.error(&e))?;
        self.note_reply();
        *self.connection.lock() = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `f` within the configured timeout.
    async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.config.timeout, f).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout_error()),
        };
        match &result {
            Ok(_) => self.note_reply(),
            Err(StoreError::Timeout(_)) => self.note_timeout(),
            Err(_) => {}
        }
        result
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn note_reply(&self) {
        self.last_reply
            .store(self.millis_since_start(), Ordering::Relaxed);
    }

    /// A call timed out. The client reconnects by itself when a connection
    /// *fails*, but a connection whose peer vanished without a reset (a host
    /// gone, a partition, a NAT forgetting it) just stays silent: every call
    /// would time out until the kernel gives up on it, many minutes later. So
    /// once nothing at all has come back for [`silence_limit`], the connection
    /// is dropped and the next call makes a new one; the clock restarts, so
    /// this happens at most once per `silence_limit` (a Redis that is only
    /// slow, answering some calls, keeps its connection).
    fn note_timeout(&self) {
        let now = self.millis_since_start();
        let last = self.last_reply.load(Ordering::Relaxed);
        let limit =
            u64::try_from(silence_limit(self.config.timeout).as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= limit
            && self
                .last_reply
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && self.connection.lock().take().is_some()
        {
            tracing::warn!(
                silent_ms = now - last,
                "no reply from Redis for {} ms; dropping the connection and reconnecting",
                now - last
            );
        }
    }

    fn timeout_error(&self) -> StoreError {
        StoreError::Timeout(u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX))
    }

    fn error(&self, e: &redis::RedisError) -> StoreError {
        if e.is_timeout() {
            self.timeout_error()
        } else {
            StoreError::Unavailable(e.to_string())
        }
    }

    async fn decide_chain(
        &self,
        chain: &Chain<'_>,
        cost: u64,
        mode: Mode,
    ) -> Result<ChainOutcome, StoreError> {
        if chain.links.is_empty() {
            return Ok(ChainOutcome::combine(mode, &[], &[]).0);
        }
        // One buffer for all the keys: one allocation per decision, not one per key.
        let mut keys = String::new();
        let mut key_ends = ArrayVec::new();
        for link in &chain.links {
            keys::push_bucket_key(&mut keys, &self.config.key_prefix, &chain.tree.name, link);
            key_ends.push(keys.len());
        }
        // Boxed: the decision travels through the batch queue (and this future
        // is boxed and moved at every layer), so it moves as one pointer.
        let prepared = Box::new(Prepared {
            keys,
            key_ends,
            mode: match mode {
                Mode::Commit => b'c',
                Mode::DryRun => b'd',
                Mode::Peek => b'p',
            },
            cost,
            levels: chain
                .links
                .iter()
                .map(|link| {
                    let spec = link.spec;
                    (
                        keys::algorithm_code(spec.algorithm),
                        spec.limit,
                        spec.window,
                        spec.burst,
                        u8::from(link.level.shadow),
                    )
                })
                .collect(),
        });
        let reply = self
            .batcher
            .submit(&chain.tree.name, prepared, |batch| {
                // Only a leader makes the call; boxing it keeps every
                // caller's future small.
                Box::pin(self.call(batch))
            })
            .await?;
        outcome_from_reply(mode, cost, &chain.links, &reply)
    }

    /// One script call deciding `batch` in order; one reply per decision.
    #[expect(
        clippy::vec_box,
        reason = "decisions arrive boxed through the batch queue; unboxing would copy each"
    )]
    async fn call(&self, batch: Vec<Box<Prepared>>) -> Result<Vec<DecisionReply>, StoreError> {
        // Each bucket goes to the script once, however many decisions touch it,
        // and each level's limits once, however many buckets it has; buckets
        // then name their level and decisions their buckets by index (1-based,
        // as Lua counts).
        let mut indexes: hashbrown::HashMap<&str, usize> = hashbrown::HashMap::new();
        let mut buckets: Vec<(&str, usize)> = Vec::new();
        let mut levels: Vec<&LevelArgs> = Vec::new();
        let mut chains: Vec<ArrayVec<usize, MAX_LEVELS>> = Vec::with_capacity(batch.len());
        for decision in &batch {
            let mut chain = ArrayVec::new();
            for (key, level) in decision.keys().zip(&decision.levels) {
                let next = buckets.len() + 1;
                let index = *indexes.entry_ref(key).or_insert_with(|| {
                    // Few distinct levels per batch: a scan beats hashing.
                    let level_index = match levels.iter().position(|l| *l == level) {
                        Some(i) => i + 1,
                        None => {
                            levels.push(level);
                            levels.len()
                        }
                    };
                    buckets.push((key, level_index));
                    next
                });
                chain.push(index);
            }
            chains.push(chain);
        }
        // EVALSHA written straight into one command buffer (a
        // `redis::ScriptInvocation` allocates a buffer per argument and then
        // copies them all); NOSCRIPT is handled below as it would.
        let key_bytes: usize = buckets.iter().map(|(key, _)| key.len()).sum();
        let args = 8 + buckets.len();
        let data = key_bytes
            + 128
            + levels.len() * LEVEL_LEN
            + buckets.len() * 2
            + batch.len() * DECISION_LEN;
        let mut cmd = redis::Cmd::with_capacity(args, data);
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(buckets.len());
        for &(key, _) in &buckets {
            cmd.arg(key);
        }
        match &self.config.clock_override {
            Some(clock) => cmd.arg(clock.now()).arg(TEST_TTL_SLACK_MS),
            None => cmd.arg("").arg(0),
        };
        // The levels and each bucket's level, packed (see LEVEL in decide.lua).
        let mut packed = Vec::with_capacity(levels.len() * LEVEL_LEN);
        for &&(code, limit, window, burst, shadow) in &levels {
            packed.extend_from_slice(code.as_bytes());
            // Limits, windows and bursts are below 2^53 (the policy checks).
            for n in [limit, window, burst] {
                packed.extend_from_slice(&(n as f64).to_le_bytes());
            }
            packed.push(shadow);
        }
        cmd.arg(packed);
        let mut packed = Vec::with_capacity(buckets.len() * 2);
        for &(_, level_index) in &buckets {
            let index = u16::try_from(level_index).map_err(|_| too_big())?;
            packed.extend_from_slice(&index.to_le_bytes());
        }
        cmd.arg(packed);
        // The decisions as one packed argument (see MODE_PEEK in decide.lua).
        let mut decisions = Vec::with_capacity(batch.len() * DECISION_LEN);
        for (decision, chain) in batch.iter().zip(&chains) {
            decisions.push(decision.mode);
            // No level holds more than MAX_LIMIT (< 2^32), so any larger cost
            // is answered the same as u32::MAX.
            let cost = u32::try_from(decision.cost).unwrap_or(u32::MAX);
            decisions.extend_from_slice(&cost.to_le_bytes());
            decisions.push(u8::try_from(chain.len()).map_err(|_| too_big())?);
            for &index in chain {
                let index = u16::try_from(index).map_err(|_| too_big())?;
                decisions.extend_from_slice(&index.to_le_bytes());
            }
        }
        cmd.arg(decisions);
        let mut connection = self.connection().await?;
        let reply: Vec<u8> = match cmd.query_async(&mut connection).await {
            // After a Redis restart or SCRIPT FLUSH: load the script, call again.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script
                    .load_async(&mut connection)
                    .await
                    .map_err(|e| self.error(&e))?;
                cmd.query_async(&mut connection).await
            }
            reply => reply,
        }
        .map_err(|e| self.error(&e))?;
        decode_reply(reply, batch.iter().map(|d| d.levels.len()))
    }
}

fn too_big() -> StoreError {
    StoreError::Unavailable("a batch too large to encode for the decision script".to_owned())
}

/// Builds the outcome from the script's per-level records with the same
/// [`ChainOutcome::combine`] the memory store uses, and checks that the script
/// charged exactly the levels `combine` says must be charged.
fn outcome_from_reply(
    mode: Mode,
    cost: u64,
    links: &[Link<'_>],
    reply: &DecisionReply,
) -> Result<ChainOutcome, StoreError> {
    let mut inputs: ArrayVec<LevelInput, MAX_LEVELS> = ArrayVec::new();
    let mut verdicts: ArrayVec<Verdict, MAX_LEVELS> = ArrayVec::new();
    let mut charged = 0u32;
    // What the script probed each level with (a peek probes with 1).
    let probe = if mode == Mode::Peek { 1 } else { cost };
    let mut records = reply.records();
    for (i, link) in links.iter().enumerate() {
        let record = records.next().unwrap_or_else(|| {
            Err(StoreError::Unavailable(format!(
                "the decision script answered {i} of {} levels",
                links.len()
            )))
        })?;
        inputs.push(LevelInput {
            level_index: link.level_index,
            shadow: link.level.shadow,
            overflow: false,
            limit: link.spec.limit,
            window: link.spec.window,
        });
        verdicts.push(level_verdict(&record, reply.now, link.spec, probe)?);
        if record.flags & CHARGED != 0 {
            charged |= 1 << i;
        }
    }
    if records.next().is_some() {
        return Err(StoreError::Unavailable(format!(
            "the decision script answered more than {} levels",
            links.len()
        )));
    }
    let (outcome, charge) = ChainOutcome::combine(mode, &inputs, &verdicts);
    if charge != charged {
        // Cannot happen unless decide.lua and combine disagree: say so loudly
        // rather than hand back an answer that does not match what was recorded.
        tracing::error!(
            ?charge,
            ?charged,
            "decide.lua charged other levels than combine"
        );
        return Err(StoreError::Unavailable(
            "the decision script and ChainOutcome::combine disagree on which levels to charge"
                .to_owned(),
        ));
    }
    Ok(outcome)
}

impl Store for RedisStore {
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        cost: u64,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(self.bounded(self.decide_chain(chain, cost, mode)))
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.bounded(async move {
            let mut connection = self.connection().await?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
                .map_err(|e| self.error(&e))
        }))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
