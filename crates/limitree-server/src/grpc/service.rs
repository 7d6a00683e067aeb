//! `envoy.service.ratelimit.v3.RateLimitService` as the tower service tonic
//! serves: written here instead of taken from envoy-types' generated server
//! so that one call costs less (callgrind counts in BENCHMARKS.md, "Through
//! the server (gRPC `ShouldRateLimit`)"):
//!
//! - the call's future is boxed once (the generated server boxes the
//!   `async_trait` future inside a second box), and its request is not taken
//!   apart and rebuilt for the auth check (tonic's `InterceptedService` does
//!   that for every call, with or without `[server.auth]`): the token is read
//!   from the headers in place, before anything is decoded;
//! - the codec's buffers are sized for Envoy's messages ([`CODEC_BUFFER_BYTES`])
//!   instead of tonic's 8 KiB default, an allocation each way per call that
//!   goes past the allocator's per-thread cache.
//!
//! What a client sees is the generated server's behaviour: the one method at
//! its path, `UNIMPLEMENTED` for any other, `UNAUTHENTICATED` first (before
//! routing or decoding) when `[server.auth]` refuses, requests over [`super::MAX_MESSAGE_BYTES`]
//! refused by tonic.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::{Authorize, RateLimitServer};

/// The method's path.
const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// Initial size of the buffer a call's request is read into and its response
/// written into. Envoy's requests and our answers are a few hundred bytes;
/// a larger message grows the buffer as needed.
pub const CODEC_BUFFER_BYTES: usize = 1024;

/// A boxed future, as tower services return.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The service tonic serves for `ShouldRateLimit` (behind `auth`).
#[derive(Debug, Clone)]
pub struct RlsService {
    server: Arc<RateLimitServer>,
    auth: Authorize,
}

impl RlsService {
    /// `server` behind `auth`.
    pub fn new(server: RateLimitServer, auth: Authorize) -> Self {
        RlsService {
            server: Arc::new(server),
            auth,
        }
    }
}

impl NamedService for RlsService {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitService";
}

impl<B> tower::Service<http::Request<B>> for RlsService
where
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Err(refused) = self.auth.check(request.headers()) {
            return Box::pin(std::future::ready(Ok(refused.into_http())));
        }
        if request.uri().path() != SHOULD_RATE_LIMIT {
            let unimplemented = Status::unimplemented(format!(
                "{} has no method at {}; it has ShouldRateLimit",
                Self::NAME,
                super::cut_for_log(request.uri().path())
            ));
            return Box::pin(std::future::ready(Ok(unimplemented.into_http())));
        }
        let server = Arc::clone(&self.server);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RlsCodec)
                .apply_max_message_size_config(Some(super::MAX_MESSAGE_BYTES), None);
            Ok(grpc.unary(Method(server), request).await)
        })
    }
}

/// The method, as tonic's unary handling calls it: the answer's future in
/// one box (the only one of its own; the generated server has two).
struct Method(Arc<RateLimitServer>);

impl tonic::server::UnaryService<RateLimitRequest> for Method {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Result<Response<RateLimitResponse>, Status>>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let server = Arc::clone(&self.0);
        Box::pin(async move { server.should_rate_limit(request).await })
    }
}

/// Prost's codec with buffers of [`CODEC_BUFFER_BYTES`].
#[derive(Debug, Clone, Copy, Default)]
struct RlsCodec;

impl Codec for RlsCodec {
    type Encode = RateLimitResponse;
    type Decode = RateLimitRequest;
    type Encoder = <ProstCodec<RateLimitResponse, RateLimitRequest> as Codec>::Encoder;
    type Decoder = <ProstCodec<RateLimitResponse, RateLimitRequest> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<RateLimitResponse, RateLimitRequest>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<RateLimitResponse, RateLimitRequest>::raw_decoder(settings())
    }
}

fn settings() -> BufferSettings {
    // tonic's default yield threshold (32 KiB): only streams reach it.
    BufferSettings::new(CODEC_BUFFER_BYTES, 32 * 1024)
}
