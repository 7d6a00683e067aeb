//! The HTTP JSON API: one module per endpoint, one for headers, one for errors.
//!
//! - [`auth`]: the scope each path needs (`[server.auth]`), 401/403 before routing.
//! - [`body`]: Content-Type, size cap and JSON parsing shared by the POST endpoints.
//! - [`check`]: `POST /v1/check`.
//! - [`notify`]: `POST /v1/notify` (the Slack relay).
//! - [`metrics`]: `GET /metrics` (Prometheus text; the families are in [`crate::metrics`]).
//! - [`health`]: `GET /healthz`, `GET /readyz`.
//! - [`headers`]: `RateLimit-Policy`, `RateLimit`, `Retry-After`.
//! - [`request_id`]: `X-Request-Id` and the per-request tracing span.
//! - [`problem`]: every error → status + `application/problem+json`.
//! - [`reload`]: `POST /v1/reload` (the admin trigger of [`crate::reload`]).
//! - [`reply`]: the check and notify reply bodies (also read by [`crate::client`]).
//! - [`rls_json`]: `POST /json`, envoyproxy/ratelimit's HTTP bridge (proto3 JSON).
//! - [`policy`]: `GET /v1/policy`, the running policy as JSON.
//! - [`buckets`]: `GET /v1/buckets`, `GET|DELETE /v1/buckets/{tree}/{level}/{bucket}`;
//!   [`bucket_path`]: how a bucket is named in a path.
//! - [`status`]: `GET /v1/status`, what the status page shows, as JSON;
//!   [`page`]: `GET /`, the status page itself.

pub mod auth;
pub mod body;
pub mod bucket_path;
pub mod buckets;
pub mod check;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod policy;
pub mod problem;
pub mod reload;
pub mod reply;
pub mod request_id;
pub mod rls_json;
pub mod status;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use limitree::Limiter;
use tower_http::catch_panic::CatchPanicLayer;

use crate::notify::Relay;

/// What every handler shares. Cheap to clone (the limiter is `Arc`s inside).
/// Built from a config by [`crate::app::App::build`].
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
    /// Every metric family, rendered by `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Connection counters, kept by the listener.
    pub connections: Arc<crate::listener::ConnectionMetrics>,
    /// Responses by route and status, recorded by the router's layer.
    pub http_metrics: Arc<crate::metrics::http::HttpMetrics>,
    /// Envoy's `ShouldRateLimit`: served over gRPC, and over HTTP at `POST /json`.
    pub rls: crate::grpc::RateLimitServer,
    /// What the status page shows besides the limiter and the relay.
    pub status: status::StatusState,
    /// Policy reload: `POST /v1/reload`, and the status `/readyz` and
    /// `/metrics` show.
    pub reload: Arc<crate::reload::Reloader>,
    /// `[server.auth]`'s tokens; `None`: every endpoint is open.
    pub auth: Option<Arc<crate::auth::Tokens>>,
}

impl AppState {
    /// The state for `config` around `limiter`, `notify` and `auth`'s tokens, registering the
    /// handlers' own families (checks, HTTP responses, connections, the rate
    /// limit service, the relay) in `metrics`. The store's families are
    /// registered by whoever wraps the store ([`crate::app::App::build`]).
    pub fn new(
        config: &crate::config::Config,
        limiter: Limiter,
        notify: Relay,
        metrics: Arc<crate::metrics::Metrics>,
        clock: Arc<dyn limitree::Clock>,
        auth: Option<Arc<crate::auth::Tokens>>,
    ) -> AppState {
        let status = status::StatusState::new(&limiter.policy(), Arc::clone(&clock));
        let rls = crate::grpc::RateLimitServer::new(limiter.clone(), config.server.unknown_domain)
            .with_headers(config.server.rls_headers)
            .with_denials(Arc::clone(&status.denials));
        metrics.register_collector(Arc::clone(rls.counters()));
        metrics.register_collector(Arc::clone(rls.connections()));
        let connections = Arc::new(crate::listener::ConnectionMetrics::new(
            crate::listener::Protocol::Http,
        ));
        metrics.register_collector(Arc::clone(&connections));
        metrics.register_collector(crate::metrics::relay::RelayCollector(notify.clone()));
        let checks = Arc::new(metrics::CheckCounters::new(&limiter.policy(), &metrics));
        let reload = Arc::new(crate::reload::Reloader::new(
            config,
            limiter.clone(),
            Arc::clone(&checks),
            Arc::clone(rls.counters()),
            clock,
        ));
        metrics.register_collector(crate::metrics::reload::ReloadCollector(Arc::clone(&reload)));
        AppState {
            checks,
            http_metrics: Arc::new(crate::metrics::http::HttpMetrics::new(&metrics)),
            connections,
            metrics,
            notify,
            rls,
            status,
            reload,
            limiter,
            auth,
            max_body_bytes: config.server.max_body_bytes,
        }
    }
}

/// The router. Unknown paths and wrong methods answer problem+json too (axum's
/// defaults have empty bodies); `Allow` is still set by axum's method router.
///
/// The request-id middleware and the panic catcher wrap the routes once, as
/// one service (the outer router's only fallback), rather than through
/// `Router::layer`, which wraps every route in boxed layers of its own that are
/// cloned, and allocated, on every request.
///
/// With `[server.auth]`, the token check sits inside the request-id layer (so
/// a 401 carries the id and is logged in the request's span) and before the
/// routes, so it answers for unknown paths too ([`auth`] says why).
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    // Routes go through `Routes::route` (as `Router::route`): the metrics
    // layer labels requests with the same templates.
    let (routes, http_metrics) = crate::metrics::http::Routes::default()
        .route("/v1/check", post(check::check).fallback(problem::post_only))
        .route(
            "/v1/notify",
            post(notify::notify).fallback(problem::post_only),
        )
        .route("/json", post(rls_json::json).fallback(problem::post_only))
        .route(
            "/v1/reload",
            post(reload::reload).fallback(problem::post_only),
        )
        .route(
            "/metrics",
            get(metrics::metrics).fallback(problem::get_only),
        )
        .route("/healthz", get(health::healthz).fallback(problem::get_only))
        .route("/readyz", get(health::readyz).fallback(problem::get_only))
        .route(
            "/v1/policy",
            get(policy::policy).fallback(problem::get_only),
        )
        .route(
            "/v1/buckets",
            get(buckets::list).fallback(problem::get_only),
        )
        .route(
            "/v1/buckets/{tree}/{level}/{bucket}",
            get(buckets::one)
                .delete(buckets::reset)
                .fallback(problem::get_or_delete),
        )
        .route(
            "/v1/status",
            get(status::status).fallback(problem::get_only),
        )
        .route("/", get(page::page).fallback(problem::get_only))
        .finish(&state.http_metrics);
    let routes = routes.fallback(problem::not_found).with_state(state);
    let service = tower::ServiceBuilder::new()
        // Outermost, so even a panic's response carries the request id.
        .layer(middleware::from_fn(request_id::track))
        // Outside the panic catcher, so a panic's 500 is counted too.
        .layer(http_metrics)
        .layer(CatchPanicLayer::custom(problem::panicked))
        .option_layer(auth.map(|tokens| middleware::from_fn_with_state(tokens, auth::require)))
        .service(routes);
    Router::new().fallback_service(service)
}
