//! Building the store a config names: a [`MemoryStore`], or Redis behind the
//! failure policy.
//!
//! For Redis the server runs
//! `FallbackStore(RedisStore, MemoryStore, on_error)`: the Redis store decides
//! while it answers within `timeout`; when it fails, `on_error` decides
//! (`reason = "store_unavailable"`) and `/readyz` reports the outage. The Redis
//! store connects lazily and reconnects by itself, so a server started while
//! Redis is down serves (by `on_error`) and becomes ready when Redis comes up.

use std::sync::Arc;

use limitree::{Clock, MemoryStore, Policy, Store};

use crate::config::{StoreConfig, StoreKind};

/// The store for `config`, over `policy`; in-process state (the memory store,
/// and Redis's `local` fallback) runs on `clock`. Fails only on settings the config
/// validation lets through but the store refuses (a bug; the message is safe
/// to print: it holds no password).
pub fn build(
    config: &StoreConfig,
    policy: &Policy,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Store>, String> {
    match config.kind {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::with_clock(policy, clock))),
        StoreKind::Redis => redis(config, policy, clock),
    }
}

#[cfg(feature = "redis")]
fn redis(
    config: &StoreConfig,
    policy: &Policy,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Store>, String> {
    use limitree::store::fallback::FallbackStore;
    use limitree::store::redis::{RedisConfig, RedisStore, RedisTarget};

    use crate::config::RedisNodes;

    let settings = &config.redis;
    let mut urls = settings.urls_with_password()?;
    let target = match settings.nodes {
        Some(RedisNodes::Cluster(_)) => RedisTarget::Cluster(urls),
        _ => RedisTarget::Standalone(urls.pop().unwrap_or_default()),
    };
    let redis_config = RedisConfig::new(target)
        .with_key_prefix(settings.key_prefix.clone())
        .with_timeout(settings.timeout);
    let primary = RedisStore::lazy(redis_config).map_err(|e| e.to_string())?;
    tracing::info!(
        store = "redis",
        redis = %settings.describe(),
        "buckets live in Redis; while it fails, on_error = {} decides",
        settings.on_error.as_str()
    );
    Ok(Arc::new(FallbackStore::new(
        Arc::new(primary),
        MemoryStore::with_clock(policy, clock),
        settings.on_error,
    )))
}

#[cfg(not(feature = "redis"))]
fn redis(_: &StoreConfig, _: &Policy, _: Arc<dyn Clock>) -> Result<Arc<dyn Store>, String> {
    Err("this limitree was built without the `redis` feature".to_owned())
}
