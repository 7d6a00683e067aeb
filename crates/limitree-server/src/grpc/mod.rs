//! The gRPC listener: Envoy's `envoy.service.ratelimit.v3.RateLimitService` and
//! the standard `grpc.health.v1.Health`, over h2c (plaintext HTTP/2, as Envoy's
//! rate-limit cluster speaks it), or over TLS when configured.
//!
//! - [`rls`]: a `RateLimitRequest` → one check → a `RateLimitResponse` (pure).
//! - [`RateLimitServer`]: the service itself — request ids, unknown domains and
//!   the mapping of errors to gRPC statuses, in one place.
//! - `service`: how tonic calls it — the method's route, the auth check and
//!   the codec, written for a cheap call.
//! - [`serve`]: the listener, stopped by a shutdown future like the HTTP one,
//!   its connections bounded by `connections` (the `[server]` timeouts and
//!   `max_connections`).
//! - [`Authorize`]: `[server.auth]` for `ShouldRateLimit` (check scope);
//!   `grpc.health.v1.Health` stays open, as the HTTP health endpoints do.
//! - [`tls`]: `[server] grpc_tls`, the listener's certificate and key.

mod connections;
pub mod rls;
mod service;
pub mod tls;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use limitree::{CheckError, Limiter, StoreError};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::listener::{Acceptor, ConnectionMetrics, Limits, Listeners, Protocol};

/// Largest request message accepted. Envoy's are a few hundred bytes; the cap
/// keeps a hostile client from making the server buffer megabytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Calls open at once on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`;
/// nginx's `http2_max_concurrent_streams` is 128). Envoy opens another
/// connection when one is full; a client cannot make one connection hold
/// more than this many calls' buffers.
pub const MAX_CALLS_PER_CONNECTION: u32 = 128;

/// HTTP/2 PING every this long on every connection, so one whose peer is
/// gone (no FIN, no RST) is noticed while it has calls open...
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// ...and closed when the PING is not answered within this (gRPC's default
/// keepalive timeout).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Most distinct unknown domains remembered for the once-per-domain warning.
const MAX_WARNED_DOMAINS: usize = 1_024;

/// What a call for a domain that names no tree gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownDomain {
    /// `OK` with no limit, a counted metric and one warning per domain
    /// (envoyproxy/ratelimit's behaviour).
    #[default]
    Allow,
    /// `overall_code = UNKNOWN`.
    Error,
}

/// Which headers a `ShouldRateLimit` answer asks Envoy to add to the
/// client's response (`response_headers_to_add`), describing the most
/// constraining limit: the one that denied, else the one with the fewest left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseHeaders {
    /// None (envoyproxy/ratelimit's default).
    #[default]
    Off,
    /// The IETF draft's `RateLimit-Policy` and `RateLimit` (and `Retry-After`
    /// when limited), exactly as `POST /v1/check` sends them.
    Draft,
    /// `X-RateLimit-Limit` (`10, 10;w=1800`), `X-RateLimit-Remaining`,
    /// `X-RateLimit-Reset` (seconds), as envoyproxy/ratelimit sends them.
    XRateLimit,
}

/// The `RateLimitService` on a limiter.
#[derive(Debug, Clone)]
pub struct RateLimitServer {
    limiter: Limiter,
    unknown_domain: UnknownDomain,
    headers: ResponseHeaders,
    counters: Arc<GrpcCounters>,
    connections: Arc<ConnectionMetrics>,
    /// Where denials are noted for the status page, if anywhere.
    denials: Option<Arc<crate::denials::Denials>>,
}

/// What the rate limit service counts, rendered by `GET /metrics` through
/// its [`Collector`](crate::metrics::Collector) impl. Labels are tree names
/// from the policy and fixed codes: a client cannot add series.
#[derive(Debug)]
pub struct GrpcCounters {
    /// Seconds each gRPC `ShouldRateLimit` call took in the service (from the
    /// decoded request to the response; not `POST /json`, which the HTTP
    /// metrics time).
    pub duration: crate::metrics::Histogram,
    /// Per tree: calls answered `OK`, and `OVER_LIMIT`. Trees a reloaded
    /// policy adds are added ([`GrpcCounters::track`]); none is removed, so
    /// a counter never goes back.
    pub by_domain: parking_lot::RwLock<Vec<(String, Arc<[AtomicU64; 2]>)>>,
    /// Calls for a domain that names no tree.
    pub unknown_domain: AtomicU64,
    /// Calls refused with an error status (invalid argument, store failure).
    pub errors: AtomicU64,
    warned: Mutex<HashSet<String>>,
}

impl GrpcCounters {
    fn new(limiter: &Limiter) -> Self {
        GrpcCounters {
            duration: crate::metrics::latency_histogram(),
            by_domain: parking_lot::RwLock::new(
                limiter
                    .policy()
                    .trees()
                    .iter()
                    .map(|t| (t.name.clone(), Arc::default()))
                    .collect(),
            ),
            unknown_domain: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            warned: Mutex::default(),
        }
    }
}

impl GrpcCounters {
    /// Adds counters for the trees of `policy` (a reloaded one) not yet
    /// counted.
    pub fn track(&self, policy: &limitree::Policy) {
        let mut by_domain = self.by_domain.write();
        for tree in policy.trees() {
            if !by_domain.iter().any(|(name, _)| *name == tree.name) {
                by_domain.push((tree.name.clone(), Arc::default()));
            }
        }
    }
}

impl RateLimitServer {
    /// The service over `limiter`.
    pub fn new(limiter: Limiter, unknown_domain: UnknownDomain) -> Self {
        RateLimitServer {
            counters: Arc::new(GrpcCounters::new(&limiter)),
            connections: Arc::new(ConnectionMetrics::new(Protocol::Grpc)),
            limiter,
            unknown_domain,
            headers: ResponseHeaders::Off,
            denials: None,
        }
    }

    /// The same, noting its denials in `denials` (the status page's).
    pub fn with_denials(mut self, denials: Arc<crate::denials::Denials>) -> Self {
        self.denials = Some(denials);
        self
    }

    /// The same, answering with `headers`.
    pub fn with_headers(mut self, headers: ResponseHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<GrpcCounters> {
        &self.counters
    }

    /// Its listener's connection counters (`limitree_grpc_connections…`).
    pub fn connections(&self) -> &Arc<ConnectionMetrics> {
        &self.connections
    }

    async fn decide(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        let question =
            rls::question(request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // One policy for the whole answer, even if a reload lands meanwhile.
        let snapshot = self.limiter.snapshot();
        let tree = match snapshot.tree(Some(question.tree)) {
            Ok(tree) => tree,
            Err(CheckError::UnknownTree { .. }) => return Ok(self.unknown(&question)),
            Err(e) => return Err(status(&e)),
        };
        let descriptors = question.descriptors();
        let (decision, targets) = snapshot
            .check_descriptors(tree, &descriptors, &question.costs, false)
            .await
            .map_err(|e| status(&e))?;
        tracing::debug!(allowed = decision.allowed, reason = %decision.reason, "decided");
        if let Some(denials) = &self.denials {
            denials.record(crate::denials::Source::Rls, &decision);
        }
        let mut response = rls::response(&decision, tree, &targets);
        response.response_headers_to_add = rls::headers(&decision, self.headers);
        Ok(response)
    }

    fn unknown(&self, question: &rls::Question<'_>) -> RateLimitResponse {
        self.counters.unknown_domain.fetch_add(1, Ordering::Relaxed);
        {
            let mut warned = self.counters.warned.lock();
            if warned.len() < MAX_WARNED_DOMAINS
                && !warned.contains(question.tree)
                && warned.insert(question.tree.to_owned())
            {
                tracing::warn!(
                    domain = %question.tree,
                    "ShouldRateLimit for domain `{}`, which names no tree; answering {} (set [server] unknown_domain)",
                    question.tree,
                    match self.unknown_domain {
                        UnknownDomain::Allow => "OK",
                        UnknownDomain::Error => "UNKNOWN",
                    }
                );
            }
        }
        let code = match self.unknown_domain {
            UnknownDomain::Allow => Code::Ok,
            UnknownDomain::Error => Code::Unknown,
        };
        RateLimitResponse {
            overall_code: code as i32,
            statuses: (0..question.len()).map(|_| rls_status(code)).collect(),
            ..Default::default()
        }
    }
}

fn rls_status(
    code: Code,
) -> envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::DescriptorStatus {
    envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::DescriptorStatus {
        code: code as i32,
        ..Default::default()
    }
}

/// The one place a check error becomes a gRPC status.
fn status(error: &CheckError) -> Status {
    match error {
        // A protocol error is a bug (the store and this build disagree), not
        // an outage: Envoy's failure_mode applies to both, but the log and
        // the code tell them apart.
        CheckError::Store(e @ StoreError::Protocol(_)) => Status::internal(e.to_string()),
        CheckError::Store(e) => Status::unavailable(e.to_string()),
        CheckError::UnknownTree { .. }
        | CheckError::TreeRequired { .. }
        | CheckError::Chain(_)
        | CheckError::CostTooLarge { .. } => Status::invalid_argument(error.to_string()),
    }
}

impl RateLimitServer {
    /// Answers one `ShouldRateLimit`, counted, in a `grpc` span carrying
    /// `request_id` (a fresh UUID when `None`). Shared by the gRPC service and
    /// the HTTP bridge (`POST /json`), so both answer alike.
    pub async fn answer(
        &self,
        request: &RateLimitRequest,
        request_id: Option<&str>,
    ) -> Result<RateLimitResponse, Status> {
        // The span (and a fresh id) only when a subscriber wants it: at
        // `RUST_LOG=warn` a call formats and allocates nothing for it.
        let span = if tracing::span_enabled!(tracing::Level::INFO) {
            let mut text = uuid::Uuid::encode_buffer();
            let id = match request_id {
                Some(id) => id,
                None => &*crate::http::request_id::fresh_uuid()
                    .hyphenated()
                    .encode_lower(&mut text),
            };
            tracing::info_span!("grpc", request_id = %id, domain = %rls_domain(request))
        } else {
            tracing::Span::none()
        };
        let answer = self.decide(request).instrument(span).await;
        match &answer {
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) => {
                let over = usize::from(response.overall_code == Code::OverLimit as i32);
                // A domain that names no tree was counted as unknown_domain.
                if let Some((_, codes)) = self
                    .counters
                    .by_domain
                    .read()
                    .iter()
                    .find(|(name, _)| *name == request.domain)
                {
                    codes[over].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        answer
    }

    /// One gRPC `ShouldRateLimit` call: its request id from `x-request-id`
    /// (Envoy sends one), answered and timed.
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| crate::http::request_id::is_sane(v.as_bytes()));
        let watch = crate::metrics::Stopwatch::start();
        let answer = self.answer(request.get_ref(), id).await.map(Response::new);
        self.counters.duration.observe(watch.seconds());
        answer
    }
}

impl crate::metrics::Collector for GrpcCounters {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;

        let load = |a: &AtomicU64| ConstCounter::new(a.load(Ordering::Relaxed));
        let mut family = encoder.encode_descriptor(
            "limitree_rls_decisions",
            "ShouldRateLimit answers (gRPC and POST /json), by domain and overall code",
            None,
            MetricType::Counter,
        )?;
        for (domain, codes) in self.by_domain.read().iter() {
            for (code, value) in ["ok", "over_limit"].iter().zip(codes.iter()) {
                load(value).encode(
                    family.encode_family(&[("domain", domain.as_str()), ("code", code)])?,
                )?;
            }
        }
        load(&self.unknown_domain).encode(encoder.encode_descriptor(
            "limitree_rls_unknown_domain",
            "ShouldRateLimit calls for a domain that names no tree",
            None,
            MetricType::Counter,
        )?)?;
        load(&self.errors).encode(encoder.encode_descriptor(
            "limitree_rls_errors",
            "ShouldRateLimit calls answered with an error status (invalid argument, store failure)",
            None,
            MetricType::Counter,
        )?)?;
        let mut family = encoder.encode_descriptor(
            "limitree_grpc_request_duration_seconds",
            "gRPC calls: seconds from the decoded request to the response, by method",
            None,
            MetricType::Histogram,
        )?;
        self.duration
            .encode(family.encode_family(&[("method", "ShouldRateLimit")])?)
    }
}

/// The domain as logged: cut, since it comes from the client.
fn rls_domain(request: &RateLimitRequest) -> &str {
    cut_for_log(&request.domain)
}

/// At most 64 bytes of `text` (on a character boundary), for a log line or
/// a status message that echoes what a client sent.
fn cut_for_log(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The check in front of `ShouldRateLimit`: with `[server.auth]`, a call
/// needs `authorization: Bearer TOKEN` (a check or an admin token) in its
/// metadata, else it is `UNAUTHENTICATED` before it is decoded or decided.
/// The token is compared as [`crate::auth::Tokens`] does; neither it nor
/// which tokens exist appears in the status or the log.
#[derive(Debug, Clone)]
pub struct Authorize(pub Option<Arc<crate::auth::Tokens>>);

impl Authorize {
    /// Whether a call with these headers (its metadata) may go on.
    pub fn check(&self, headers: &tonic::codegen::http::HeaderMap) -> Result<(), Status> {
        let Some(tokens) = &self.0 else {
            return Ok(());
        };
        let sent = headers
            .get_all("authorization")
            .iter()
            .map(|v| v.as_bytes());
        tokens
            .authorize(sent, crate::auth::Scope::Check)
            .map_err(|refusal| Status::unauthenticated(refusal.to_string()))
    }
}

/// Serves `service` (behind `auth`) and `grpc.health.v1.Health` on `listener`
/// until `shutdown` completes, then lets in-flight calls finish. With `tls`,
/// every connection must complete a TLS handshake (ALPN `h2`) first; without,
/// it is h2c. Connections are bounded by `limits` as the HTTP listener's are
/// (see `connections`), and shed for the other `listeners` when descriptors
/// run out; the sweep that closes timed-out ones runs alongside, in this
/// future, and ends with it.
pub async fn serve(
    listener: TcpListener,
    service: RateLimitServer,
    auth: Authorize,
    tls: Option<&tls::GrpcTls>,
    limits: Limits,
    listeners: &Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<service::RlsService>().await;
    let acceptor = Acceptor::new(
        listener,
        limits.max_connections,
        Arc::clone(&service.connections),
        listeners,
    );
    let registry = Arc::clone(acceptor.registry());
    let incoming = connections::incoming(acceptor, limits);
    let mut builder = tonic::transport::Server::builder()
        .timeout(limits.body_timeout)
        .max_concurrent_streams(MAX_CALLS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = tls {
        // The files were checked when the config loaded (`GrpcTls::load`
        // builds the same rustls config), so this fails only on a bug.
        builder = builder.tls_config(tls.server_config())?;
    }
    let serving = builder
        .layer(connections::CountCallsLayer)
        .add_service(health_service)
        .add_service(service::RlsService::new(service, auth))
        .serve_with_incoming_shutdown(incoming, shutdown);
    let sweeping = connections::sweep(registry, connections::sweep_every(&limits));
    tokio::select! {
        served = serving => served,
        never = sweeping => match never {},
    }
}
