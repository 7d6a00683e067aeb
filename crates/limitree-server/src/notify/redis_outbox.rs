//! The outbox in Redis, for the Redis store: several instances share one
//! Redis (standalone or Cluster) and so one queue of accepted notifications,
//! and what an instance accepted survives a crash of that instance.
//!
//! # Keys
//!
//! Every key is under the hash tag `{<key_prefix>:notify}`, so on a Redis
//! Cluster they live in one slot and each script below stays atomic:
//!
//! - `{P:notify}:outbox` — a stream, one entry per accepted notification
//!   (field `n`: the [`Notification`] as JSON), with the consumer group
//!   `relay`. Every instance is one consumer of that group, named
//!   `<pid>-<random>` afresh at each start.
//! - `{P:notify}:alive:<consumer>` — the instance's lease (its pid), set with
//!   a TTL of [`RedisOutboxConfig::lease`] and renewed every
//!   [`RedisOutboxConfig::upkeep_every`] while it runs.
//! - `{P:notify}:dead` — dead letters, a stream (field `letter`: the
//!   [`DeadLetter`] as JSON) capped with `MAXLEN ~` at
//!   [`RedisOutboxConfig::dead_letter_max`].
//! - `{P:notify}:digests` — a list of saved digest tallies (JSON), written at
//!   shutdown and taken whole by whichever instance starts next.
//!
//! # Life of a notification
//!
//! - `append`: one script adds the entry (`XADD`) and at once reads it into the
//!   appending instance's pending list (`XREADGROUP … >`, `COUNT 1`), so it is
//!   durable in Redis, and owned by that instance, before the 202 is sent.
//!   The appending instance delivers it; no other instance reads it in normal
//!   operation.
//! - `done`: `XACK` and `XDEL` in one script.
//! - Take-over ([`Outbox::upkeep`], at connect and then every
//!   `upkeep_every`): one script renews this instance's lease and, for every
//!   other consumer of the group whose lease has expired (it crashed or was
//!   cut off) or was released (it shut down), claims its pending entries
//!   (`XCLAIM`) and deletes the consumer once it holds nothing. The script is
//!   atomic, so two instances never take over the same entry.
//! - [`Outbox::release`] (after the relay's workers have stopped at shutdown)
//!   deletes the lease, so what is left is taken over at once by a running
//!   instance or by the next one to start.
//!
//! # Guarantees and duplicates
//!
//! A notification answered 202 is in Redis (as durable as Redis is
//! configured to be: with `appendfsync always` it survives a Redis crash too)
//! and stays there until delivered or dead-lettered. It is delivered by one
//! instance while that instance's lease is alive. Duplicates are possible
//! only when delivery happened but `done` did not reach Redis:
//! - the instance crashed (or lost Redis) between Slack's 200 and `done`: the
//!   instance that takes the entry over sends it again;
//! - the instance stalled (a pause, or a partition from Redis) for longer
//!   than the lease while still delivering: another instance takes its
//!   entries over and both may send the ones in flight.
//!
//! After a crash an instance's entries wait for its lease to expire
//! (at most [`RedisOutboxConfig::lease`], then up to one `upkeep_every`)
//! before another instance sends them; after a graceful shutdown there is no
//! wait.
//!
//! Nothing is lost when an instance dies: entries are removed only by `done`.
//! A taken-over entry whose category has no route on the taking instance
//! stays in its pending list (logged) until that instance stops.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::time::Duration;

use limitree::store::BoxFuture;
use limitree::store::redis::{Connection, RedisConfig, RedisTarget};
use parking_lot::Mutex;
use redis::Script;

use super::outbox::{DeadLetter, Notification, Outbox, OutboxError};
use super::tally::Saved;

/// The consumer group every instance joins.
pub const GROUP: &str = "relay";

/// How to reach Redis and how the outbox behaves there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOutboxConfig {
    /// Where Redis is (the Redis store's target).
    pub target: RedisTarget,
    /// Keys are under `{<key_prefix>:notify}`; no `{` or `}`.
    pub key_prefix: String,
    /// Deadline of every Redis call (an `append` that misses it is not
    /// accepted: the client gets a 503 and no 202).
    pub timeout: Duration,
    /// How long an instance's claim outlives its last renewal: after a crash,
    /// its notifications are taken over this long after its last upkeep.
    pub lease: Duration,
    /// How often the lease is renewed and dead instances' notifications taken
    /// over; well below `lease`.
    pub upkeep_every: Duration,
    /// Dead letters kept (about: `XADD … MAXLEN ~`).
    pub dead_letter_max: usize,
    /// Most entries taken over by one upkeep (the rest by the next).
    pub take_over_batch: usize,
}

impl RedisOutboxConfig {
    /// A standalone Redis at `url` (`redis://…` or `rediss://…`).
    pub fn standalone(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self::new(RedisTarget::Standalone(url.into()), key_prefix)
    }

    /// A Redis Cluster reached through `urls`.
    pub fn cluster<I, S>(urls: I, key_prefix: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            RedisTarget::Cluster(urls.into_iter().map(Into::into).collect()),
            key_prefix,
        )
    }

    /// The Redis the store uses, with its key prefix.
    pub fn from_store(store: &RedisConfig) -> Self {
        Self::new(store.target.clone(), store.key_prefix.clone())
    }

    /// `target` and `key_prefix` with the defaults: timeout 2s, lease 15s,
    /// upkeep every 5s, 10 000 dead letters, take-over batches of 1000.
    pub fn new(target: RedisTarget, key_prefix: impl Into<String>) -> Self {
        RedisOutboxConfig {
            target,
            key_prefix: key_prefix.into(),
            timeout: Duration::from_secs(2),
            lease: Duration::from_secs(15),
            upkeep_every: Duration::from_secs(5),
            dead_letter_max: 10_000,
            take_over_batch: 1000,
        }
    }

    /// Sets [`RedisOutboxConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`RedisOutboxConfig::lease`] and [`RedisOutboxConfig::upkeep_every`].
    pub fn with_lease(mut self, lease: Duration, upkeep_every: Duration) -> Self {
        self.lease = lease;
        self.upkeep_every = upkeep_every;
        self
    }

    /// Sets [`RedisOutboxConfig::dead_letter_max`].
    pub fn with_dead_letter_max(mut self, max: usize) -> Self {
        self.dead_letter_max = max;
        self
    }

    fn validate(&self) -> Result<(), String> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(format!(
                "key_prefix `{}` must be non-empty and contain no `{{` or `}}`",
                self.key_prefix
            ));
        }
        if self.timeout.is_zero() || self.upkeep_every.is_zero() {
            return Err("timeout and upkeep_every must be above zero".to_owned());
        }
        if self.lease <= self.upkeep_every {
            return Err("the lease must be longer than upkeep_every".to_owned());
        }
        if self.take_over_batch == 0 || self.take_over_batch > 5000 {
            return Err("take_over_batch must be between 1 and 5000".to_owned());
        }
        if let RedisTarget::Cluster(urls) = &self.target
            && urls.is_empty()
        {
            return Err("a cluster needs at least one node URL".to_owned());
        }
        Ok(())
    }
}

/// The key names of one outbox.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The stream of accepted notifications.
    pub outbox: String,
    /// The prefix of lease keys (`…:alive:` + consumer).
    pub alive_prefix: String,
    /// The dead-letter stream.
    pub dead: String,
    /// The saved digest tallies.
    pub digests: String,
}

impl Keys {
    /// The keys under `{<key_prefix>:notify}`.
    pub fn new(key_prefix: &str) -> Keys {
        let tag = format!("{{{key_prefix}:notify}}");
        Keys {
            outbox: format!("{tag}:outbox"),
            alive_prefix: format!("{tag}:alive:"),
            dead: format!("{tag}:dead"),
            digests: format!("{tag}:digests"),
        }
    }
}

/// Adds the entry and reads it into this consumer's pending list, atomically
/// (no other `XADD` can come between, so `>` with `COUNT 1` is this entry).
const APPEND: &str = r"
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM')
local id = redis.call('XADD', KEYS[1], '*', 'n', ARGV[3])
local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if not read or read[1][2][1][1] ~= id then
  return redis.error_reply('the outbox stream has entries no RedisOutbox wrote')
end
return id
";

const DONE: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
";

/// Renews the lease (KEYS[2]) and, when ARGV[6] is `1`, claims for this
/// consumer the pending entries of every consumer without a lease; returns
/// `[id, json, id, json, …]`.
const UPKEEP: &str = r"
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
if ARGV[6] ~= '1' then
  return {}
end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM')
local out = {}
local budget = tonumber(ARGV[7])
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
  end
  if name ~= ARGV[2] and redis.call('EXISTS', ARGV[5] .. name) == 0 then
    if pending > 0 and budget > 0 then
      local ids = {}
      for _, e in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', math.min(pending, budget), name)) do
        ids[#ids + 1] = e[1]
      end
      if #ids > 0 then
        for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
          local fields = e[2]
          if type(fields) == 'table' then
            for i = 1, #fields, 2 do
              if fields[i] == 'n' then
                out[#out + 1] = e[1]
                out[#out + 1] = fields[i + 1]
              end
            end
          end
        end
        budget = budget - #ids
        pending = pending - #ids
      end
    end
    if pending <= 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    end
  end
end
return out
";

const TAKE_DIGESTS: &str = r"
local saved = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return saved
";

/// The outbox in a Redis stream; see the [module docs](self) for keys,
/// guarantees and which duplicates are possible.
///
/// ```no_run
/// # async fn example(relay: limitree_server::notify::Relay,
/// #     tracker: tokio_util::task::TaskTracker,
/// #     cancel: tokio_util::sync::CancellationToken) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use limitree_server::notify::OutboxSource;
/// use limitree_server::notify::redis_outbox::{RedisOutbox, RedisOutboxConfig};
///
/// let config = RedisOutboxConfig::standalone("redis://127.0.0.1:6379", "limitree");
/// let outbox = RedisOutbox::connect(config).await?;
/// relay.use_outbox(OutboxSource::Given(Arc::new(outbox)));
/// relay.start(&tracker, &cancel)?;
/// # Ok(()) }
/// ```
pub struct RedisOutbox {
    config: RedisOutboxConfig,
    keys: Keys,
    consumer: String,
    lease_key: String,
    connection: Connection,
    /// Stream ids of the notifications this instance holds, by notification id.
    ids: Mutex<HashMap<String, String>>,
    /// Read at connect: what this instance took over.
    pending: Vec<Notification>,
    /// Read (and removed) at connect.
    digests: Mutex<Vec<Saved>>,
    scripts: Scripts,
}

/// The scripts, loaded once per connection (`EVALSHA`, `EVAL` on `NOSCRIPT`).
struct Scripts {
    append: Script,
    done: Script,
    upkeep: Script,
    take_digests: Script,
}

impl fmt::Debug for RedisOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOutbox")
            .field("outbox", &self.keys.outbox)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisOutbox {
    /// Connects, joins the group as a new consumer, takes its lease, takes
    /// over what instances without a lease left (what [`Outbox::pending`]
    /// then returns) and takes the saved digest tallies. Call it just before
    /// the relay starts over it ([`super::relay::OutboxSource`]), which renews
    /// the lease from then on.
    pub async fn connect(config: RedisOutboxConfig) -> Result<RedisOutbox, OutboxError> {
        config.validate().map_err(|e| {
            OutboxError::new("redis", io::Error::new(io::ErrorKind::InvalidInput, e))
        })?;
        let keys = Keys::new(&config.key_prefix);
        let where_ = keys.outbox.clone();
        let connection = tokio::time::timeout(
            config.timeout,
            Connection::open(&config.target, config.timeout),
        )
        .await
        .map_err(|_| {
            OutboxError::new(
                where_.clone(),
                io::Error::new(io::ErrorKind::TimedOut, "connecting to redis timed out"),
            )
        })?
        .map_err(|e| OutboxError::new(where_.clone(), io::Error::other(e)))?;
        let consumer = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let lease_key = format!("{}{consumer}", keys.alive_prefix);
        let mut outbox = RedisOutbox {
            config,
            keys,
            consumer,
            lease_key,
            connection,
            ids: Mutex::new(HashMap::new()),
            pending: Vec::new(),
            digests: Mutex::new(Vec::new()),
            scripts: Scripts {
                append: Script::new(APPEND),
                done: Script::new(DONE),
                upkeep: Script::new(UPKEEP),
                take_digests: Script::new(TAKE_DIGESTS),
            },
        };
        outbox.pending = outbox.take_over(true).await?;
        let mut take = outbox.scripts.take_digests.prepare_invoke();
        take.key(&outbox.keys.digests);
        let saved: Vec<String> = outbox.call(&outbox.keys.digests, &take).await?;
        *outbox.digests.get_mut() = saved
            .iter()
            .filter_map(|s| match serde_json::from_str::<Saved>(s) {
                Ok(saved) => Some(saved),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable digest tallies");
                    None
                }
            })
            .collect();
        tracing::info!(
            outbox = outbox.keys.outbox,
            consumer = outbox.consumer,
            pending = outbox.pending.len(),
            "notify: outbox in redis"
        );
        Ok(outbox)
    }

    /// This instance's consumer name in the group (also in its lease key).
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The keys it uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs `invocation` with the timeout; errors name `key`.
    async fn call<T: redis::FromRedisValue>(
        &self,
        key: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, OutboxError> {
        let mut connection = self.connection.clone();
        self.bounded(key, async move {
            invocation.invoke_async(&mut connection).await
        })
        .await
    }

    async fn bounded<T>(
        &self,
        key: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, OutboxError> {
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(OutboxError::new(key, io::Error::other(e))),
            Err(_) => Err(OutboxError::new(
                key,
                io::Error::new(io::ErrorKind::TimedOut, "redis did not answer in time"),
            )),
        }
    }

    async fn take_over(&self, take_over: bool) -> Result<Vec<Notification>, OutboxError> {
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        let mut upkeep = self.scripts.upkeep.prepare_invoke();
        upkeep
            .key(&self.keys.outbox)
            .key(&self.lease_key)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(lease_ms)
            .arg(std::process::id())
            .arg(&self.keys.alive_prefix)
            .arg(if take_over { "1" } else { "0" })
            .arg(self.config.take_over_batch);
        let flat: Vec<String> = self.call(&self.keys.outbox, &upkeep).await?;
        let mut taken = Vec::with_capacity(flat.len() / 2);
        let mut ids = self.ids.lock();
        for pair in flat.chunks_exact(2) {
            match serde_json::from_str::<Notification>(&pair[1]) {
                Ok(n) => {
                    ids.insert(n.id.clone(), pair[0].clone());
                    taken.push(n);
                }
                // Left in this consumer's pending list for people to look at.
                Err(e) => tracing::warn!(
                    entry = pair[0],
                    error = %e,
                    "notify: skipping an unreadable outbox entry"
                ),
            }
        }
        Ok(taken)
    }
}

fn json_error(key: &str, e: serde_json::Error) -> OutboxError {
    OutboxError::new(key, io::Error::other(e))
}

impl Outbox for RedisOutbox {
    fn append(&self, n: Notification) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            let json = serde_json::to_string(&n).map_err(|e| json_error(&self.keys.outbox, e))?;
            let mut append = self.scripts.append.prepare_invoke();
            append
                .key(&self.keys.outbox)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(json);
            let id: String = self.call(&self.keys.outbox, &append).await?;
            self.ids.lock().insert(n.id, id);
            Ok(())
        })
    }

    fn done(&self, id: String) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            let Some(entry) = self.ids.lock().get(&id).cloned() else {
                return Ok(());
            };
            let mut done = self.scripts.done.prepare_invoke();
            done.key(&self.keys.outbox).arg(GROUP).arg(&entry);
            let _: i64 = self.call(&self.keys.outbox, &done).await?;
            self.ids.lock().remove(&id);
            Ok(())
        })
    }

    fn dead_letter(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            let json =
                serde_json::to_string(&letter).map_err(|e| json_error(&self.keys.dead, e))?;
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&self.keys.dead)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.dead_letter_max)
                .arg("*")
                .arg("letter")
                .arg(json);
            let mut connection = self.connection.clone();
            let _: String = self
                .bounded(&self.keys.dead, async move {
                    cmd.query_async(&mut connection).await
                })
                .await?;
            Ok(())
        })
    }

    fn pending(&self) -> Vec<Notification> {
        self.pending.clone()
    }

    fn save_digests(&self, tallies: Vec<Saved>) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            if tallies.is_empty() {
                return Ok(());
            }
            let mut cmd = redis::cmd("RPUSH");
            cmd.arg(&self.keys.digests);
            for tally in &tallies {
                cmd.arg(
                    serde_json::to_string(tally).map_err(|e| json_error(&self.keys.digests, e))?,
                );
            }
            let mut connection = self.connection.clone();
            let _: i64 = self
                .bounded(&self.keys.digests, async move {
                    cmd.query_async(&mut connection).await
                })
                .await?;
            Ok(())
        })
    }

    fn take_digests(&self) -> Vec<Saved> {
        std::mem::take(&mut *self.digests.lock())
    }

    fn upkeep_every(&self) -> Option<Duration> {
        Some(self.config.upkeep_every)
    }

    fn upkeep(&self, take_over: bool) -> BoxFuture<'_, Result<Vec<Notification>, OutboxError>> {
        Box::pin(self.take_over(take_over))
    }

    fn release(&self) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&self.lease_key);
            let mut connection = self.connection.clone();
            let _: i64 = self
                .bounded(&self.lease_key, async move {
                    cmd.query_async(&mut connection).await
                })
                .await?;
            Ok(())
        })
    }
}
