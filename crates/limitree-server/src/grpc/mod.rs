//! The gRPC listener: Envoy's `envoy.service.ratelimit.v3.RateLimitService` and
//! the standard `grpc.health.v1.Health`, over h2c (plaintext HTTP/2, as Envoy's
//! rate-limit cluster speaks it).
//!
//! - [`rls`]: a `RateLimitRequest` → one check → a `RateLimitResponse` (pure).
//! - [`RateLimitServer`]: the service itself — request ids, unknown domains and
//!   the mapping of errors to gRPC statuses, in one place.
//! - [`serve`]: the listener, stopped by a shutdown future like the HTTP one.

pub mod rls;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use limitree::{CheckError, Limiter};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

/// Largest request message accepted. Envoy's are a few hundred bytes; the cap
/// keeps a hostile client from making the server buffer megabytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

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

/// The `RateLimitService` on a limiter.
#[derive(Debug, Clone)]
pub struct RateLimitServer {
    limiter: Limiter,
    unknown_domain: UnknownDomain,
    counters: Arc<GrpcCounters>,
}

/// What the gRPC listener counts (rendered by `GET /metrics`).
#[derive(Debug, Default)]
pub struct GrpcCounters {
    /// Calls answered `OK`.
    pub ok: AtomicU64,
    /// Calls answered `OVER_LIMIT`.
    pub over_limit: AtomicU64,
    /// Calls for a domain that names no tree.
    pub unknown_domain: AtomicU64,
    /// Calls refused with an error status.
    pub errors: AtomicU64,
    warned: Mutex<HashSet<String>>,
}

impl RateLimitServer {
    /// The service over `limiter`.
    pub fn new(limiter: Limiter, unknown_domain: UnknownDomain) -> Self {
        RateLimitServer {
            limiter,
            unknown_domain,
            counters: Arc::default(),
        }
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<GrpcCounters> {
        &self.counters
    }

    async fn decide(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        let question =
            rls::question(request).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let tree = match self.limiter.tree(Some(&question.tree)) {
            Ok(tree) => tree,
            Err(CheckError::UnknownTree { .. }) => return Ok(self.unknown(&question)),
            Err(e) => return Err(status(&e)),
        };
        let descriptors = question.descriptors();
        let (decision, targets) = self
            .limiter
            .check_descriptors(tree, &descriptors, &question.costs, false)
            .await
            .map_err(|e| status(&e))?;
        tracing::debug!(allowed = decision.allowed, reason = %decision.reason, "decided");
        Ok(rls::response(&decision, tree, &targets))
    }

    fn unknown(&self, question: &rls::Question) -> RateLimitResponse {
        self.counters.unknown_domain.fetch_add(1, Ordering::Relaxed);
        {
            let mut warned = self.counters.warned.lock();
            if warned.len() < MAX_WARNED_DOMAINS && warned.insert(question.tree.clone()) {
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
            statuses: question.entries.iter().map(|_| rls_status(code)).collect(),
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
        CheckError::Store(e) => Status::unavailable(e.to_string()),
        CheckError::UnknownTree { .. }
        | CheckError::TreeRequired { .. }
        | CheckError::Chain(_)
        | CheckError::CostTooLarge { .. } => Status::invalid_argument(error.to_string()),
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitServer {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| crate::http::request_id::is_sane(v.as_bytes()))
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let request = request.into_inner();
        let span = tracing::info_span!("grpc", request_id = %id, domain = %rls_domain(&request));
        let answer = self.decide(&request).instrument(span).await;
        match &answer {
            Ok(r) if r.overall_code == Code::OverLimit as i32 => {
                self.counters.over_limit.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                self.counters.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        answer.map(Response::new)
    }
}

/// The domain as logged: cut, since it comes from the client.
fn rls_domain(request: &RateLimitRequest) -> &str {
    let d = request.domain.as_str();
    let mut end = d.len().min(64);
    while !d.is_char_boundary(end) {
        end -= 1;
    }
    &d[..end]
}

/// Serves `service` and `grpc.health.v1.Health` on `listener` until `shutdown`
/// completes, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    service: RateLimitServer,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RateLimitServiceServer<RateLimitServer>>()
        .await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            RateLimitServiceServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
