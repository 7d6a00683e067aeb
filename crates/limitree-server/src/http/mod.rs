//! The HTTP JSON API: one module per endpoint, one for headers, one for errors.
//!
//! - [`body`]: Content-Type, size cap and JSON parsing shared by the POST endpoints.
//! - [`check`]: `POST /v1/check`.
//! - [`notify`]: `POST /v1/notify` (the Slack relay).
//! - [`metrics`]: `GET /metrics` (Prometheus text).
//! - [`health`]: `GET /healthz`, `GET /readyz`.
//! - [`headers`]: `RateLimit-Policy`, `RateLimit`, `Retry-After`.
//! - [`request_id`]: `X-Request-Id` and the per-request tracing span.
//! - [`problem`]: every error → status + `application/problem+json`.

pub mod body;
pub mod check;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod problem;
pub mod request_id;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use limitree::{Clock, Limiter, SystemClock};
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::notify::Relay;

/// What every handler shares. Cheap to clone (the limiter is `Arc`s inside).
#[derive(Debug, Clone)]
pub struct AppState {
    /// Decides checks.
    pub limiter: Limiter,
    /// `[server] max_body_bytes`: bodies past this get 413 before being buffered.
    pub max_body_bytes: usize,
    /// The Slack relay behind `POST /v1/notify`.
    pub notify: Relay,
    /// Check decisions counted for `GET /metrics`.
    pub checks: Arc<metrics::CheckCounters>,
}

impl AppState {
    /// The state for a validated config: its policy in the store it names,
    /// and the relay with webhooks from the process environment.
    ///
    /// # Panics
    /// If the store refuses settings the config validated (a bug).
    pub fn from_config(config: &Config) -> AppState {
        AppState::with_clock(config, Arc::new(SystemClock::new()), |var| {
            std::env::var(var).ok()
        })
    }

    /// [`AppState::from_config`] on a given clock (a manual one in tests)
    /// and environment (webhook URLs for `${VAR}` references).
    pub fn with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
        env: impl Fn(&str) -> Option<String>,
    ) -> AppState {
        let policy = Arc::new(config.policy.clone());
        let store = crate::store::build(&config.store, &policy, Arc::clone(&clock))
            .unwrap_or_else(|e| panic!("{}: [store]: {e}", config.source));
        let limiter = Limiter::new(policy, store);
        let notify = Relay::new(&config.notify, limiter.clone(), clock, env);
        #[cfg(feature = "redis")]
        if config.store.kind == crate::config::StoreKind::Redis {
            use crate::config::RedisNodes;
            use crate::notify::redis_outbox::RedisOutboxConfig;
            // The same Redis and key prefix as the buckets (validated above).
            let redis = &config.store.redis;
            if let Ok(urls) = redis.urls_with_password() {
                let outbox = match redis.nodes {
                    Some(RedisNodes::Cluster(_)) => {
                        RedisOutboxConfig::cluster(urls, redis.key_prefix.clone())
                    }
                    _ => RedisOutboxConfig::standalone(
                        urls.into_iter().next().unwrap_or_default(),
                        redis.key_prefix.clone(),
                    ),
                };
                notify.use_outbox(crate::notify::OutboxSource::Redis(outbox));
            }
        }
        AppState {
            checks: Arc::new(metrics::CheckCounters::new(limiter.policy())),
            notify,
            limiter,
            max_body_bytes: config.server.max_body_bytes,
        }
    }
}

/// The router. Unknown paths and wrong methods answer problem+json too (axum's
/// defaults have empty bodies); `Allow` is still set by axum's method router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/check", post(check::check).fallback(problem::post_only))
        .route(
            "/v1/notify",
            post(notify::notify).fallback(problem::post_only),
        )
        .route(
            "/metrics",
            get(metrics::metrics).fallback(problem::get_only),
        )
        .route("/healthz", get(health::healthz).fallback(problem::get_only))
        .route("/readyz", get(health::readyz).fallback(problem::get_only))
        .fallback(problem::not_found)
        .layer(CatchPanicLayer::custom(problem::panicked))
        // Outermost, so even a panic's response carries the request id.
        .layer(middleware::from_fn(request_id::track))
        .with_state(state)
}
