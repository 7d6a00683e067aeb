//! What the HTTP API answered: `limitree_http_responses_total{route,status}`
//! and `limitree_http_request_duration_seconds{route}`, recorded by one
//! middleware ([`track`]) around every route, so a route added to the router
//! is counted without code of its own.
//!
//! `route` is the route's template as the router matched it (`/v1/check`,
//! `/v1/buckets/{tree}/{level}/{bucket}`), never the request's path, and
//! `unmatched` for a request no route took (a 404): a client cannot add
//! series by inventing paths. Requests that hyper answers before any route
//! sees them (a malformed head) are not counted here; the listener's
//! counters cover those.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;

use super::{Counter, Family, Histogram, Metrics, Stopwatch, latency_histogram};

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    route: Arc<str>,
    status: u16,
}

/// The HTTP families, and each route's series once it has been seen.
#[derive(Debug)]
pub struct HttpMetrics {
    responses: Family<ResponseLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Route template → its series. Templates come from the router, so this
    /// holds one entry per route at most.
    routes: RwLock<HashMap<Box<str>, Arc<RouteSeries>>>,
}

/// One route's series.
#[derive(Debug)]
struct RouteSeries {
    route: Arc<str>,
    duration: Histogram,
}

impl HttpMetrics {
    /// Registers the HTTP families in `metrics`.
    pub fn new(metrics: &Metrics) -> HttpMetrics {
        HttpMetrics {
            responses: metrics.register(
                "limitree_http_responses",
                "HTTP responses, by route template and status code.",
                Family::default(),
            ),
            durations: metrics.register(
                "limitree_http_request_duration_seconds",
                "HTTP requests: from the route taking the request to its response being ready, by route template.",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ),
            routes: RwLock::default(),
        }
    }

    /// Counts one response of `route` with `status`, which took `seconds`.
    pub fn record(&self, route: &str, status: u16, seconds: f64) {
        let series = self.route(route);
        series.duration.observe(seconds);
        self.responses
            .get_or_create(&ResponseLabels {
                route: Arc::clone(&series.route),
                status,
            })
            .inc();
    }

    fn route(&self, route: &str) -> Arc<RouteSeries> {
        if let Some(series) = self.routes.read().get(route) {
            return Arc::clone(series);
        }
        let mut routes = self.routes.write();
        let series = routes.entry(Box::from(route)).or_insert_with(|| {
            let route: Arc<str> = Arc::from(route);
            Arc::new(RouteSeries {
                duration: self.durations.get_or_create_owned(&RouteLabels {
                    route: Arc::clone(&route),
                }),
                route,
            })
        });
        Arc::clone(series)
    }
}

/// The middleware: times the request and counts its response under the
/// matched route.
pub async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let watch = Stopwatch::start();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics.record(
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        response.status().as_u16(),
        watch.seconds(),
    );
    response
}
