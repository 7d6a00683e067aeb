//! Which scope an HTTP request needs, decided by its path in one middleware
//! (so a route added anywhere is covered without touching its handler), and
//! the 401/403 for one that lacks it.
//!
//! | path | scope |
//! |---|---|
//! | `POST /v1/check`, `/v1/notify`, `/json` | check (a check or an admin token) |
//! | `/healthz`, `/readyz`, `GET /` | open |
//! | `/metrics` | open, or admin with `open_metrics = false` |
//! | every other path, known or not | admin |
//!
//! Auth runs before routing: an unknown path needs an admin token like any
//! other path outside the open list, so a client without one gets the same
//! 401 for `/v1/buckets` as for `/v1/anything` and cannot map which endpoints
//! exist; with an admin token it gets the usual 404. Paths are compared as
//! sent, exactly as the router matches them, so no spelling of a path
//! (`/healthz/`, `//healthz`, `/%68ealthz`) is open that the router would
//! send to a protected handler.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::auth::{Scope, Tokens};
use crate::http::problem::ApiError;

/// The scope a request for `path` with `method` needs.
pub fn scope(method: &Method, path: &str, open_metrics: bool) -> Scope {
    match path {
        "/v1/check" | "/v1/notify" | "/json" => Scope::Check,
        "/healthz" | "/readyz" => Scope::Open,
        "/metrics" if open_metrics => Scope::Open,
        // The status page's HTML shell: its data comes from admin endpoints,
        // which the page calls with the token it asks for.
        "/" if method == Method::GET || method == Method::HEAD => Scope::Open,
        _ => Scope::Admin,
    }
}

/// Middleware: refuses a request whose `Authorization` does not grant the
/// scope its path needs, before any handler (or the 404) sees it. The token
/// is read from the header and hashed; it is never logged or echoed.
pub async fn require(State(tokens): State<Arc<Tokens>>, request: Request, next: Next) -> Response {
    let needed = scope(
        request.method(),
        request.uri().path(),
        tokens.open_metrics(),
    );
    let sent = request
        .headers()
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .map(axum::http::HeaderValue::as_bytes);
    match tokens.authorize(sent, needed) {
        Ok(()) => next.run(request).await,
        Err(refusal) => ApiError::Unauthorized {
            refusal,
            needed: needed.as_str(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::check(Method::POST, "/v1/check", true, Scope::Check)]
    #[case::check_by_get_is_still_check(Method::GET, "/v1/check", true, Scope::Check)]
    #[case::notify(Method::POST, "/v1/notify", true, Scope::Check)]
    #[case::envoy_bridge(Method::POST, "/json", true, Scope::Check)]
    #[case::policy(Method::GET, "/v1/policy", true, Scope::Admin)]
    #[case::bucket(Method::DELETE, "/v1/buckets/t/l/b", true, Scope::Admin)]
    #[case::unknown_v1(Method::GET, "/v1/anything", true, Scope::Admin)]
    #[case::unknown_elsewhere(Method::GET, "/anything", true, Scope::Admin)]
    #[case::trailing_slash(Method::POST, "/v1/check/", true, Scope::Admin)]
    #[case::health(Method::GET, "/healthz", true, Scope::Open)]
    #[case::health_with_slash(Method::GET, "/healthz/", true, Scope::Admin)]
    #[case::encoded_health(Method::GET, "/%68ealthz", true, Scope::Admin)]
    #[case::ready(Method::GET, "/readyz", true, Scope::Open)]
    #[case::metrics_open(Method::GET, "/metrics", true, Scope::Open)]
    #[case::metrics_closed(Method::GET, "/metrics", false, Scope::Admin)]
    #[case::status_page(Method::GET, "/", true, Scope::Open)]
    #[case::status_page_head(Method::HEAD, "/", true, Scope::Open)]
    #[case::post_to_root(Method::POST, "/", true, Scope::Admin)]
    fn paths_are_classified(
        #[case] method: Method,
        #[case] path: &str,
        #[case] open_metrics: bool,
        #[case] expected: Scope,
    ) {
        assert_eq!(scope(&method, path, open_metrics), expected);
    }
}
