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
//! computed on this side from that state by the memory store's own algorithm
//! code, and the outcome by the same `combine`, which also cross-checks which
//! levels the script charged.
//!
//! Decisions for the same tree that arrive while a call for it is in flight
//! go together in the next call (see `batch.rs`): the script decides them one
//! after the other at the same `now`, each atomically and exactly as if it had
//! been a call of its own, while Redis pays the cost of a call (and of loading
//! a shared bucket such as a global level) once per batch.
//!
//! Needs Redis 6.0 or later (the script uses `SET … KEEPTTL`); tested on 7.0.
//!
//! # Where to read what
//! - `decide.lua`: what Redis does in one call — the algorithms in Lua, the
//!   chain rule, the charges, the TTLs.
//! - `protocol.rs`: the call's wire format, both directions — arguments built
//!   from chains, the reply parsed into verdicts and a [`ChainOutcome`], the
//!   constants shared with the script (a test checks them against its text),
//!   and which mismatches are [`StoreError::Protocol`].
//! - [`keys`]: each bucket's key. `batch.rs`: which decisions share a call.
//!   `connection.rs`: standalone or Cluster connections. `config.rs`: the
//!   store's settings and URL handling. This file: connecting, timeouts,
//!   reconnecting, and [`Store`] for [`RedisStore`].
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
//! [`StoreError::Unavailable`], naming their cause and address (`cause.rs`:
//! refused, WRONGPASS/NOAUTH, TLS, LOADING, CLUSTERDOWN); a reply that breaks the script protocol, or a
//! Lua error in the script itself, is a bug and becomes
//! [`StoreError::Protocol`] (logged, never a fallback). The connection is made on first use if the store
//! was built with [`RedisStore::lazy`], and remade by the next call when it drops,
//! so a store outlives Redis restarts. A connection that has stayed silent for
//! ten timeouts (at least 1 s) is dropped and made again too: a peer that
//! vanished without a reset never makes it fail.

mod batch;
mod carry;
mod cause;
mod config;
mod connection;
pub mod keys;
mod protocol;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

pub use config::{
    DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT, RedisConfig, RedisTarget, check_url, redact_url,
    url_with_password,
};

use self::batch::Batcher;
pub use self::connection::Connection;
use self::protocol::{DecisionReply, ScriptDecision};
use super::{BoxFuture, BucketScan, ScannedBuckets, Store, StoreError};
use crate::chain::Chain;
use crate::decision::{ChainOutcome, Mode};
use crate::policy::Policy;

/// How long Redis may stay silent (every call timing out, no reply at all)
/// before the connection is considered dead and remade: ten timeouts, at least
/// a second.
fn silence_limit(timeout: std::time::Duration) -> std::time::Duration {
    (timeout * 10).max(std::time::Duration::from_secs(1))
}

/// Keys one SCAN call looks at (its `COUNT`) when listing a level's buckets.
const SCAN_COUNT: usize = 1000;

/// How long listing a level's buckets may keep scanning before it answers
/// with what it found (and says it was truncated): a level with millions of
/// keys must not hold an operator's request, or Redis, for long.
const SCAN_TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// A [`Store`] whose buckets live in Redis. See the module docs.
#[derive(Debug)]
pub struct RedisStore {
    config: RedisConfig,
    /// Set on the first successful connection; retried on the next call while
    /// Redis is unreachable; dropped (and so remade) when it has gone silent.
    connection: parking_lot::Mutex<Option<Connection>>,
    /// One connection attempt at a time; the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    /// Why the last connection attempt failed (cleared when one succeeds):
    /// what a call that timed out waiting on another's attempt reports.
    connect_error: parking_lot::Mutex<Option<String>>,
    /// When the store was built: the origin of `last_reply`.
    started: Instant,
    /// Milliseconds after `started` of the last reply from Redis (or of the
    /// last reconnection): see [`RedisStore::note_timeout`].
    last_reply: AtomicU64,
    script: redis::Script,
    /// Concurrent decisions of a tree share a script call (see [`batch`]).
    batcher: Batcher<Box<ScriptDecision>, DecisionReply>,
    /// The carries of the last reload that changed a split (see
    /// [`carry`]); empty otherwise, and then a decision pays one atomic load.
    carries: arc_swap::ArcSwapOption<carry::CarryPlans>,
}

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
            connect_error: parking_lot::Mutex::new(None),
            started: Instant::now(),
            last_reply: AtomicU64::new(0),
            script: redis::Script::new(protocol::DECIDE_LUA),
            batcher: Batcher::default(),
            carries: arc_swap::ArcSwapOption::empty(),
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
        // A little under the call's deadline, so that a connection that never
        // completes is reported as such rather than as a bare timeout.
        let within = self.config.timeout * 9 / 10;
        let connection = tokio::time::timeout(
            within,
            Connection::open(&self.config.target, self.config.timeout),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(cause::connect_timed_out(
                &self.config.target,
                within.as_millis(),
            ))
        })
        .and_then(|opened| opened.map_err(|e| self.error(&e)))
        .inspect_err(|e| {
            if let StoreError::Unavailable(cause) = e {
                *self.connect_error.lock() = Some(cause.clone());
            }
        })?;
        self.connect_error.lock().take();
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
        let timeout_ms = u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
        if self.connection.lock().is_some() {
            return StoreError::Timeout(timeout_ms);
        }
        let cause = self.connect_error.lock().clone();
        StoreError::TimeoutConnecting {
            timeout_ms,
            cause: cause.unwrap_or_else(|| cause::still_connecting(&self.config.target)),
        }
    }

    fn error(&self, e: &redis::RedisError) -> StoreError {
        if e.is_timeout() {
            self.timeout_error()
        } else {
            // redis-rs reconnects after I/O errors only: a reconnection refused
            // its password would stay failed even once the password is right
            // again, so the next call makes a new connection.
            if e.kind() == redis::ErrorKind::AuthenticationFailed {
                self.connection.lock().take();
            }
            StoreError::Unavailable(cause::describe(e, &self.config.target))
        }
    }

    async fn decide_chain(
        &self,
        chain: &Chain<'_>,
        mode: Mode,
    ) -> Result<ChainOutcome, StoreError> {
        if chain.buckets.is_empty() {
            return Ok(ChainOutcome::combine(mode, chain, 0, &[], &[]).0);
        }
        let carries = self.carries.load();
        let (carried, carry): (Vec<usize>, Vec<_>) = carries
            .as_ref()
            .map(|plans| plans.args_for(&self.config.key_prefix, chain))
            .unwrap_or_default()
            .into_iter()
            .unzip();
        let decision = ScriptDecision::new(&self.config.key_prefix, chain, mode, carry);
        let reply = self
            .batcher
            .submit(&chain.tree.name, decision, |batch| {
                // Only a leader makes the call; boxing it keeps every
                // caller's future small.
                Box::pin(self.call(batch))
            })
            .await?;
        if !carried.is_empty()
            && let Some(plans) = carries.as_ref()
        {
            plans.answered(&chain.tree.name, &carried, reply.now);
        }
        protocol::decode_outcome(mode, chain, &reply)
    }

    /// One script call deciding `batch` in order; one reply per decision.
    #[expect(
        clippy::vec_box,
        reason = "decisions arrive boxed through the batch queue; unboxing would copy each"
    )]
    async fn call(
        &self,
        batch: Vec<Box<ScriptDecision>>,
    ) -> Result<Vec<DecisionReply>, StoreError> {
        let runs = protocol::runs_without_conflicts(&batch);
        if runs.len() == 1 {
            return self.call_one(&batch).await;
        }
        // Decisions of two policies (a reload taking effect) that give a
        // bucket different limits: one call per run, in order.
        let mut replies = Vec::with_capacity(batch.len());
        for run in runs {
            replies.extend(self.call_one(&batch[run]).await?);
        }
        Ok(replies)
    }

    /// One script call deciding `batch` (no key in it with two specs).
    async fn call_one(
        &self,
        batch: &[Box<ScriptDecision>],
    ) -> Result<Vec<DecisionReply>, StoreError> {
        let now = self.config.clock_override.as_ref().map(|clock| clock.now());
        let cmd = protocol::encode_call(self.script.get_hash(), now, batch)?;
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
        .map_err(|e| {
            if protocol::is_script_bug(&e) {
                protocol::protocol_error(format!("decide.lua failed: {e}"))
            } else {
                self.error(&e)
            }
        })?;
        protocol::decode_reply(reply, batch.iter().map(|d| d.levels()))
    }
}

impl RedisStore {
    /// [`Store::scan_buckets`]: SCAN with `MATCH` on the level's key prefix,
    /// `COUNT` [`SCAN_COUNT`], until the cursor returns to 0, `max_buckets`
    /// are found or [`SCAN_TIME_BUDGET`] has passed. On a Cluster the SCAN
    /// goes to the primary that owns the tree's slot (every key of a tree is
    /// there, see [`keys`]); standalone, to the server. Each call is bounded
    /// by the store's timeout.
    async fn scan_level(&self, scan: BucketScan<'_>) -> Result<ScannedBuckets, StoreError> {
        let Some(level) = scan.tree.levels.get(scan.level_index) else {
            return Err(StoreError::UnknownTree(scan.tree.name.clone()));
        };
        if level.is_global() {
            return Ok(ScannedBuckets {
                buckets: vec![Vec::new()],
                truncated: false,
            });
        }
        let base = keys::level_key(
            &self.config.key_prefix,
            &scan.tree.name,
            &level.name,
            level.spec.algorithm,
        );
        let pattern = keys::match_pattern(&base);
        // A bucket split by fair sharing has no key of its own: its parts'
        // keys name it.
        let split = scan.tree.split_of(scan.level_index).is_some();
        let mut connection = self.bounded(self.connection()).await?;
        let slot = match &connection {
            Connection::Standalone(_) => None,
            Connection::Cluster(_) => Some(
                self.bounded(async {
                    redis::cmd("CLUSTER")
                        .arg("KEYSLOT")
                        .arg(&base)
                        .query_async::<u16>(&mut connection.clone())
                        .await
                        .map_err(|e| self.error(&e))
                })
                .await?,
            ),
        };
        let deadline = Instant::now() + SCAN_TIME_BUDGET;
        // SCAN may return a key more than once.
        let mut seen = std::collections::HashSet::new();
        let mut found = ScannedBuckets::default();
        let mut cursor = 0u64;
        loop {
            let (next, keys) = self
                .bounded(self.scan_once(&mut connection, slot, cursor, &pattern))
                .await?;
            for key in keys {
                let values = if split {
                    keys::split_bucket_values(&key, &base, &level.by)
                } else {
                    keys::bucket_values(&key, &base, &level.by)
                };
                let Some(values) = values else {
                    continue;
                };
                let wanted = scan
                    .prefix
                    .is_none_or(|p| values.first().is_some_and(|v| v.starts_with(p)));
                if !wanted || seen.contains(&values) {
                    continue;
                }
                if found.buckets.len() == scan.max_buckets {
                    found.truncated = true;
                    return Ok(found);
                }
                seen.insert(values.clone());
                found.buckets.push(values);
            }
            if next == 0 {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                found.truncated = true;
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// One `SCAN cursor MATCH pattern COUNT n`: to `slot`'s primary on a
    /// Cluster.
    async fn scan_once(
        &self,
        connection: &mut Connection,
        slot: Option<u16>,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let reply = match (connection, slot) {
            (Connection::Cluster(cluster), Some(slot)) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::new(slot, SlotAddr::Master);
                cluster
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
                    .and_then(|v| redis::from_redis_value(v).map_err(Into::into))
            }
            (connection, _) => cmd.query_async(connection).await,
        };
        reply.map_err(|e| self.error(&e))
    }

    /// [`Store::reset`]: one `DEL` per bucket of its key and its companions
    /// (all in the tree's slot).
    async fn reset_chain(&self, chain: &Chain<'_>) -> Result<usize, StoreError> {
        let mut connection = self.connection().await?;
        let mut reset = 0;
        for bucket in &chain.buckets {
            let key = keys::bucket_key(&self.config.key_prefix, &chain.tree.name, bucket);
            let [summary, units] = keys::companion_keys(&key);
            let mut del = redis::cmd("DEL");
            del.arg(&key).arg(&summary).arg(&units);
            // A shared parent's state is its pool and every guarantee, each
            // with its companions (a sliding log's summary left behind
            // would still count the deleted log's entries).
            if let Some(shares) = chain
                .tree
                .split_of(bucket.level_index)
                .map(|s| s.for_values(&bucket.values))
            {
                let mut part_key = String::new();
                keys::push_pool_key(
                    &mut part_key,
                    &self.config.key_prefix,
                    &chain.tree.name,
                    bucket,
                );
                del.arg(&part_key).arg(&keys::companion_keys(&part_key)[..]);
                for part in &shares.parts {
                    part_key.clear();
                    keys::push_guarantee_key(
                        &mut part_key,
                        &self.config.key_prefix,
                        &chain.tree.name,
                        bucket,
                        &part.values,
                    );
                    del.arg(&part_key).arg(&keys::companion_keys(&part_key)[..]);
                }
            }
            let deleted: usize = del
                .query_async(&mut connection)
                .await
                .map_err(|e| self.error(&e))?;
            reset += usize::from(deleted > 0);
        }
        Ok(reset)
    }
}

impl Store for RedisStore {
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(self.bounded(self.decide_chain(chain, mode)))
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

    /// Redis serves any policy as it is (its keys name the tree, level,
    /// algorithm and values), so this store stays. A reload that changes a
    /// fair-sharing split has the old layout's state carried into the new
    /// one (`store/redis/carry.rs`): the store keeps that reload's plans.
    fn for_policy(&self, old: &Policy, policy: &Policy) -> Option<Arc<dyn Store>> {
        self.carries
            .store(carry::CarryPlans::between(old, policy).map(Arc::new));
        None
    }

    fn scan_buckets<'a>(
        &'a self,
        scan: BucketScan<'a>,
    ) -> BoxFuture<'a, Result<ScannedBuckets, StoreError>> {
        Box::pin(self.scan_level(scan))
    }

    fn reset<'a>(&'a self, chain: &'a Chain<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.bounded(self.reset_chain(chain)))
    }
}
