//! Request ids: every request gets one, every log line of the request carries
//! it, and the response echoes it, so a client's complaint can be matched to the
//! server's logs.
//!
//! A client's own `X-Request-Id` is kept when it is a sane token (1 to 128
//! visible ASCII characters); anything else is replaced by a fresh UUIDv4 rather
//! than rejected, because a tracing header must never make a request fail.

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

/// The id of the request being served (in request extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client's id can be used as is.
pub fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// Middleware: picks the id, opens the `request` span (handlers record `tree`
/// and `descriptors` in it), echoes the id and logs the outcome.
pub async fn track(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(given) if is_sane(given.as_bytes()) => {
            String::from_utf8_lossy(given.as_bytes()).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        tree = tracing::field::Empty,
        descriptors = tracing::field::Empty,
    );
    request.extensions_mut().insert(RequestId(id.clone()));

    async move {
        #[expect(
            clippy::disallowed_methods,
            reason = "latency for the log line only: real time, and not a decision input"
        )]
        let started = Instant::now();
        let mut response = next.run(request).await;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        tracing::info!(
            status = response.status().as_u16(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn sanity() {
        assert!(is_sane(b"abc-123"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(&[b'a'; 129]));
        assert!(is_sane(&[b'a'; 128]));
    }
}
