//! Building the server from a validated config: the store it names, the
//! limiter over it, the Slack relay and where the relay keeps its outbox.
//!
//! This is the one place these parts are put together, so `http` only
//! carries wire formats and `cli` only reports what went wrong. Building
//! opens nothing and starts nothing (the Redis store connects lazily, the
//! relay starts in [`crate::server::run`]); it fails only on settings the
//! config validation let through but a part refuses, and says which.
//!
//! With the Redis store the server runs
//! `FallbackStore(RedisStore, MemoryStore, on_error)`: the Redis store decides
//! while it answers within `timeout`; when it fails, `on_error` decides
//! (`reason = "store_unavailable"`) and `/readyz` reports the outage. The Redis
//! store connects lazily and reconnects by itself, so a server started while
//! Redis is down serves (by `on_error`) and becomes ready when Redis comes up.
//! The relay's outbox then lives in the same Redis, under the same key prefix,
//! so the instances sharing limits also share what they accepted.

use std::sync::Arc;

use limitree::{Clock, Limiter, MemoryStore, Policy, Store, SystemClock};

use crate::config::{Config, StoreKind};
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::metrics::decisions::{CountedStore, DecisionMetrics};
use crate::metrics::store::StoreMetrics;
use crate::notify::Relay;
use crate::server::Lifecycle;

/// A built server: what the handlers share, and how [`crate::server::run`]
/// runs it.
#[derive(Debug, Clone)]
pub struct App {
    /// The handlers' state: limiter, relay, counters.
    pub state: AppState,
    /// Shutdown grace and sweep period from `[server]`.
    pub lifecycle: Lifecycle,
}

/// Why a config could not be built into a server. The message names the
/// config file and the section, and holds no password.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A `[server.auth]` token could not be read (an unset `${VAR}`, an
    /// unreadable `file:`); each message names its key, never a value.
    #[error("{}", .0.join("\n"))]
    Auth(Vec<String>),
    /// The store refused the `[store]` settings.
    #[error("{config}: [store]: {reason}")]
    Store {
        /// The config's source (a path, or `<built-in default>`).
        config: String,
        /// What the store refused.
        reason: String,
    },
}

impl App {
    /// The server for `config` on the system clock, with `${VAR}` webhooks
    /// expanded from the process environment.
    pub fn from_config(config: &Config) -> Result<App, AppError> {
        App::build(config, Arc::new(SystemClock::new()), |var| {
            std::env::var(var).ok()
        })
    }

    /// The server for `config` on `clock` (a manual one in tests), with
    /// `${VAR}` webhooks expanded from `env`.
    pub fn build(
        config: &Config,
        clock: Arc<dyn Clock>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<App, AppError> {
        let store_error = |reason: String| AppError::Store {
            config: config.source.clone(),
            reason,
        };
        let policy = Arc::new(config.policy.clone());
        let metrics = Arc::new(Metrics::new());
        let store_metrics = StoreMetrics::new(&metrics);
        // The one conversion of `[store]` to the library's Redis config; the
        // store and the relay's outbox both use it.
        let redis = redis_config(config).map_err(store_error)?;
        let store: Arc<dyn Store> = match &redis {
            None => Arc::new(store_metrics.wrap(Arc::new(MemoryStore::with_clock(
                &policy,
                Arc::clone(&clock),
            )))),
            Some(redis) => redis_store(config, redis, &policy, Arc::clone(&clock), &store_metrics)
                .map_err(store_error)?,
        };
        // Outermost: it sees every decision, also those `on_error` made.
        let decisions = DecisionMetrics::new(
            &metrics,
            &policy,
            config.server.near_limit_ratio.0,
            config.server.detailed_max_values,
        );
        let store = Arc::new(CountedStore::new(store, Arc::new(decisions)));
        let auth = match &config.server.auth {
            None => None,
            Some(auth) => Some(Arc::new(auth.resolve(&env).map_err(AppError::Auth)?)),
        };
        let limiter = Limiter::new(policy, store);
        let notify = Relay::new(&config.notify, limiter.clone(), Arc::clone(&clock), env);
        if let Some(redis) = &redis {
            use_redis_outbox(&notify, redis);
        }
        Ok(App {
            state: AppState::new(config, limiter, notify, metrics, clock, auth),
            lifecycle: Lifecycle::from(&config.server),
        })
    }
}

#[cfg(feature = "redis")]
use limitree::store::redis::RedisConfig;
/// Without the `redis` feature there is no Redis to configure.
#[cfg(not(feature = "redis"))]
type RedisConfig = std::convert::Infallible;

/// With `kind = "redis"`, the Redis the store and the outbox use.
#[cfg(feature = "redis")]
fn redis_config(config: &Config) -> Result<Option<RedisConfig>, String> {
    match config.store.kind {
        StoreKind::Memory => Ok(None),
        StoreKind::Redis => config.store.redis.redis_config().map(Some),
    }
}

#[cfg(not(feature = "redis"))]
fn redis_config(config: &Config) -> Result<Option<RedisConfig>, String> {
    match config.store.kind {
        StoreKind::Memory => Ok(None),
        StoreKind::Redis => Err("this limitree was built without the `redis` feature".to_owned()),
    }
}

/// The Redis store at `redis` (timed and its errors counted), behind
/// `on_error` with a memory store on `clock` for `on_error = "local"`.
#[cfg(feature = "redis")]
fn redis_store(
    config: &Config,
    redis: &RedisConfig,
    policy: &Policy,
    clock: Arc<dyn Clock>,
    metrics: &StoreMetrics,
) -> Result<Arc<dyn Store>, String> {
    use limitree::store::fallback::FallbackStore;
    use limitree::store::redis::RedisStore;

    let on_error = config.store.redis.on_error;
    let primary = RedisStore::lazy(redis.clone()).map_err(|e| e.to_string())?;
    tracing::info!(
        store = %config.store.describe(),
        "buckets live in Redis; while it fails, on_error = {} decides",
        on_error.as_str()
    );
    Ok(Arc::new(FallbackStore::new(
        Arc::new(metrics.wrap(Arc::new(primary))),
        MemoryStore::with_clock(policy, clock),
        on_error,
    )))
}

#[cfg(not(feature = "redis"))]
fn redis_store(
    _: &Config,
    redis: &RedisConfig,
    _: &Policy,
    _: Arc<dyn Clock>,
    _: &StoreMetrics,
) -> Result<Arc<dyn Store>, String> {
    match *redis {}
}

/// The relay's outbox in the store's Redis, under the same key prefix.
#[cfg(feature = "redis")]
fn use_redis_outbox(relay: &Relay, redis: &RedisConfig) {
    relay.use_outbox(crate::notify::OutboxSource::Redis(
        crate::notify::redis_outbox::RedisOutboxConfig::from_store(redis),
    ));
}

#[cfg(not(feature = "redis"))]
fn use_redis_outbox(_: &Relay, redis: &RedisConfig) {
    match *redis {}
}
