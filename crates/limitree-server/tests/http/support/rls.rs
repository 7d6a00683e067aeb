//! A real tonic client for Envoy's `ShouldRateLimit` on a [`Served`] server:
//! the channel (h2c, or TLS trusting a given CA), and the few builders every
//! gRPC test uses to say what it sends.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::transport::Channel;

use super::served::Served;

/// A descriptor of `entries`, in order.
pub fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A request for `domain` with `descriptors` and no `hits_addend` (cost 1).
pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors,
        hits_addend: 0,
    }
}

/// An h2c channel to `served`'s gRPC listener.
pub async fn channel(served: &Served) -> Channel {
    Channel::from_shared(format!("http://{}", grpc_addr(served)))
        .unwrap()
        .connect()
        .await
        .expect("connects over h2c")
}

/// `served`'s gRPC listener address.
pub fn grpc_addr(served: &Served) -> &str {
    served.grpc.as_deref().expect("the gRPC listener is on")
}

/// A client over [`channel`].
pub async fn client(served: &Served) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::new(channel(served).await)
}

/// `r`'s answer, which must not be an error status.
pub async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    r: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(r)
        .await
        .expect("an answer")
        .into_inner()
}

/// A code as the enum.
pub fn code(c: i32) -> Code {
    Code::try_from(c).expect("a known code")
}
