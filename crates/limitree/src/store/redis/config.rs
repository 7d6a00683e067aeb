//! How to reach Redis, and how the store behaves there.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// The prefix of every key unless configured otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "limitree";
/// The default per-call deadline: a rate limiter that stalls is worse than one
/// that answers "store unavailable" fast and lets the failure policy decide.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// Which Redis deployment holds the buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a primary behind a proxy): `redis://[:password@]host:port[/db]`
    /// or `rediss://…` for TLS.
    Standalone(String),
    /// A Redis Cluster, given one or more of its nodes' URLs (the client learns
    /// the rest and follows MOVED/ASK redirections).
    Cluster(Vec<String>),
}

/// Configuration of a [`super::RedisStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Where Redis is.
    pub target: RedisTarget,
    /// The first part of every key's hash tag, `{<key_prefix>:<tree>}`: lets
    /// several deployments (or tests) share one Redis without sharing buckets.
    /// Must not contain `{` or `}` (it is inside the hash tag).
    pub key_prefix: String,
    /// Deadline for every call (a decision, a readiness ping, connecting): past
    /// it the call fails with [`crate::StoreError::Timeout`].
    pub timeout: Duration,
    /// **For tests only.** Take `now` from this clock and pass it to the script
    /// instead of reading Redis `TIME`, so tests run on a
    /// [`crate::ManualClock`]. Keys then live a day longer than their state
    /// (test time and real time differ). Never set this in production: instances
    /// whose clocks disagree would then disagree on every window.
    pub clock_override: Option<Arc<dyn Clock>>,
}

impl RedisConfig {
    /// A standalone Redis at `url`, with default prefix and timeout.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::new(RedisTarget::Standalone(url.into()))
    }

    /// A Redis Cluster reached through `urls`, with default prefix and timeout.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(RedisTarget::Cluster(
            urls.into_iter().map(Into::into).collect(),
        ))
    }

    /// `target` with default prefix and timeout.
    pub fn new(target: RedisTarget) -> Self {
        RedisConfig {
            target,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            clock_override: None,
        }
    }

    /// Sets [`RedisConfig::key_prefix`].
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Sets [`RedisConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`RedisConfig::clock_override`] — for tests only.
    pub fn with_clock_override(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock_override = Some(clock);
        self
    }

    /// Checks what can be checked without connecting.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(format!(
                "redis key_prefix `{}` must be non-empty and contain no `{{` or `}}` (it is part of a hash tag)",
                self.key_prefix
            ));
        }
        if self.timeout.is_zero() {
            return Err("redis timeout must be above zero".to_owned());
        }
        match &self.target {
            RedisTarget::Cluster(urls) if urls.is_empty() => {
                Err("redis cluster needs at least one node URL".to_owned())
            }
            _ => Ok(()),
        }
    }
}
