//! The HTTP JSON API: one module per endpoint, one for headers, one for errors.
//!
//! - [`auth`]: the scope each path needs (`[server.auth]`), 401/403 before routing.
//! - [`body`]: Content-Type, size cap and JSON parsing shared by the POST endpoints.
//! - [`check`]: `POST /v1/check`.
//! - [`notify`]: `POST /v1/notify` (the Slack relay).
//! - [`metrics`]: `GET /metrics` (Prometheus text).
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
    let routes = Router::new()
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
        .fallback(problem::not_found)
        .with_state(state);
    let service = tower::ServiceBuilder::new()
        // Outermost, so even a panic's response carries the request id.
        .layer(middleware::from_fn(request_id::track))
        .layer(CatchPanicLayer::custom(problem::panicked))
        .option_layer(auth.map(|tokens| middleware::from_fn_with_state(tokens, auth::require)))
        .service(routes);
    Router::new().fallback_service(service)
}
