//! What the HTTP API answered: `limitree_http_responses_total{route,status}`
//! and `limitree_http_request_duration_seconds{route}`, recorded by one layer
//! ([`HttpMetricsLayer`]) around the whole router, so a route added to the
//! router is counted without code of its own.
//!
//! `route` is the route's template (`/v1/check`,
//! `/v1/buckets/{tree}/{level}/{bucket}`), never the request's path, and
//! `unmatched` for a path no route has (a 404): a client cannot add series by
//! inventing paths. The router is built through [`Routes`], which hands every
//! template both to axum and to this layer's matcher (`matchit`, the one axum
//! routes with), so the layer sits outside the router: a layer inside it
//! (axum's `Router::layer`, reading `MatchedPath`) wraps every route in boxed
//! services of its own and cost 16 % more instructions per check (BENCHMARKS.md).
//! Requests that hyper answers before any route sees them (a malformed head)
//! are not counted here; the listener's counters cover those.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::http::Response;
use axum::routing::MethodRouter;
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

/// The HTTP families, registered once per server.
#[derive(Debug)]
pub struct HttpMetrics {
    responses: Family<ResponseLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
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
                "HTTP requests: from the request head read to the response head ready, by route template.",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ),
        }
    }

    fn series(&self, template: &str) -> RouteSeries {
        let route: Arc<str> = Arc::from(template);
        RouteSeries {
            duration: self.durations.get_or_create_owned(&RouteLabels {
                route: Arc::clone(&route),
            }),
            statuses: RwLock::default(),
            route,
        }
    }
}

/// One route's series; its status counters are made as statuses occur (a
/// route answers a handful of them).
#[derive(Debug)]
struct RouteSeries {
    route: Arc<str>,
    duration: Histogram,
    statuses: RwLock<Vec<(u16, Counter)>>,
}

impl RouteSeries {
    fn record(&self, responses: &Family<ResponseLabels, Counter>, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        if let Some((_, counter)) = self.statuses.read().iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        let mut statuses = self.statuses.write();
        if let Some((_, counter)) = statuses.iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        let counter = responses.get_or_create_owned(&ResponseLabels {
            route: Arc::clone(&self.route),
            status,
        });
        counter.inc();
        statuses.push((status, counter));
    }
}

/// The router's routes, kept for axum and for the metrics layer alike: use
/// [`Routes::route`] as `Router::route`.
#[derive(Debug)]
pub struct Routes<S> {
    router: Router<S>,
    templates: Vec<&'static str>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            templates: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// `Router::route(template, method_router)`, the template also labelled.
    pub fn route(mut self, template: &'static str, method_router: MethodRouter<S>) -> Self {
        self.router = self.router.route(template, method_router);
        self.templates.push(template);
        self
    }

    /// The axum router, and the layer that labels its requests, recording into
    /// `metrics`.
    pub fn finish(self, metrics: &HttpMetrics) -> (Router<S>, HttpMetricsLayer) {
        let mut matcher = matchit::Router::new();
        let mut series = Vec::with_capacity(self.templates.len() + 1);
        for (i, template) in self.templates.iter().enumerate() {
            // axum accepted the same template with the same matcher above.
            if matcher.insert(*template, i).is_ok() {
                series.push(metrics.series(template));
            }
        }
        series.push(metrics.series(UNMATCHED));
        let table = RouteTable {
            matcher,
            series,
            responses: metrics.responses.clone(),
        };
        (self.router, HttpMetricsLayer(Arc::new(table)))
    }
}

/// Template → series, fixed once the router is built.
#[derive(Debug)]
struct RouteTable {
    matcher: matchit::Router<usize>,
    /// Per template, then `unmatched` last.
    series: Vec<RouteSeries>,
    responses: Family<ResponseLabels, Counter>,
}

impl RouteTable {
    fn route(&self, path: &str) -> usize {
        self.matcher
            .at(path)
            .map_or(self.series.len() - 1, |m| *m.value)
    }
}

/// The layer: times each request and counts its response under its route.
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer(Arc<RouteTable>);

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            table: Arc::clone(&self.0),
        }
    }
}

/// [`HttpMetricsLayer`]'s service.
#[derive(Debug, Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    table: Arc<RouteTable>,
}

impl<S, B> tower::Service<Request> for HttpMetricsService<S>
where
    S: tower::Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = self.table.route(request.uri().path());
        ResponseFuture {
            inner: self.inner.call(request),
            table: Arc::clone(&self.table),
            route,
            watch: Stopwatch::start(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response, recorded when it is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        table: Arc<RouteTable>,
        route: usize,
        watch: Stopwatch,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.table.series[*this.route].record(
                &this.table.responses,
                response.status().as_u16(),
                this.watch.seconds(),
            );
        }
        Poll::Ready(result)
    }
}
