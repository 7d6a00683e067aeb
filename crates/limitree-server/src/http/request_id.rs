//! Request ids: every request gets one, every log line of the request carries
//! it, and the response echoes it, so a client's complaint can be matched to the
//! server's logs.
//!
//! A client's own `X-Request-Id` is kept when it is a sane token (1 to 128
//! visible ASCII characters); anything else is replaced by a fresh UUIDv4 rather
//! than rejected, because a tracing header must never make a request fail. The
//! UUID's random bits come from the thread's CSPRNG (`rand::rng()`), not from a
//! system call per request.
//!
//! The access log — one `request finished` line per request, with its status
//! and latency — is the INFO event of target [`ACCESS_TARGET`]. It is off unless
//! `RUST_LOG` names that target (see [`crate::telemetry::install`]): at the
//! default level a request logs nothing unless something goes wrong, and then
//! the warning carries the request's span.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The target of the access log's `request finished` line.
pub const ACCESS_TARGET: &str = "limitree::access";

/// The id of the request being served (in request extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client's id can be used as is.
pub fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// A fresh UUIDv4 from the thread's CSPRNG (no syscall per request); the
/// gRPC service names its calls with these too.
pub fn fresh_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// A fresh UUIDv4, as a header value.
fn fresh_id() -> HeaderValue {
    let uuid = fresh_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a hyphenated UUID is a valid header value")
}

/// Middleware: picks the id, opens the `request` span (handlers record `tree`
/// and `descriptors` in it), echoes the id and, when the access log is on,
/// logs the outcome.
pub async fn track(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(given) if is_sane(given.as_bytes()) => given.clone(),
        _ => fresh_id(),
    };
    // Sane ids and UUIDs are visible ASCII, so this is the whole id.
    let text = id.to_str().unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %text,
        method = %request.method(),
        path = %request.uri().path(),
        tree = tracing::field::Empty,
        descriptors = tracing::field::Empty,
    );
    request.extensions_mut().insert(RequestId(text.to_owned()));

    let access = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
    async move {
        #[expect(
            clippy::disallowed_methods,
            reason = "latency for the access log only: real time, and not a decision input"
        )]
        let started = if access { Some(Instant::now()) } else { None };
        let mut response = next.run(request).await;
        response.headers_mut().insert(X_REQUEST_ID, id);
        if let Some(started) = started {
            tracing::info!(
                target: ACCESS_TARGET,
                status = response.status().as_u16(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "request finished"
            );
        }
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanity() {
        assert!(is_sane(b"abc-123"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(&[b'a'; 129]));
        assert!(is_sane(&[b'a'; 128]));
    }

    #[test]
    fn fresh_ids_are_v4_uuids() {
        let a = fresh_id();
        let b = fresh_id();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        let uuid = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert!(is_sane(a.as_bytes()));
    }
}
