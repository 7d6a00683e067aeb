//! The one place errors become HTTP statuses: every failure an endpoint can
//! report is an [`ApiError`], and only [`ApiError::into_response`] decides its
//! status and its `application/problem+json` body (RFC 9457).
//!
//! Keeping the mapping here means a handler says *what* went wrong and never
//! picks a status code, and every error a client sees has the same shape.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use limitree::{ChainError, CheckError, StoreError};

use crate::notify::NotifyError;
use serde::Serialize;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything an endpoint can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {message} at line {line} column {column}")]
    MalformedJson {
        /// serde_json's description.
        message: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// The body is JSON but not a valid request (wrong types, unknown fields, bad cost).
    #[error("{}", .0.join("; "))]
    InvalidBody(Vec<String>),
    /// The body was not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the server accepts.
    #[error("the body is larger than {limit} bytes; send a smaller request")]
    BodyTooLarge {
        /// `max_body_bytes`.
        limit: usize,
    },
    /// The body could not be read off the connection.
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    /// No route has this path.
    #[error(
        "no endpoint at `{0}`; the API has POST /v1/check, POST /v1/notify, GET /healthz, GET /readyz and GET /metrics"
    )]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("{method} is not allowed on `{path}`; use {allowed}")]
    MethodNotAllowed {
        /// What was sent.
        method: Method,
        /// Where.
        path: String,
        /// What the route accepts (also sent as `Allow`).
        allowed: String,
    },
    /// The limiter refused the request (unknown tree, missing descriptor, …) or
    /// its store failed.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The store is not ready (`/readyz`).
    #[error("the store is not ready: {0}")]
    NotReady(StoreError),
    /// A notification could not be accepted (no route, queue full, outbox failed).
    #[error(transparent)]
    Notify(NotifyError),
    /// A handler panicked: a bug, reported without details.
    #[error("the server failed while handling this request; it has been logged")]
    Internal,
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
}

impl ApiError {
    /// The status, a stable `type` slug and a short title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::MalformedJson { .. } => {
                (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
            }
            ApiError::InvalidBody(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            ),
            ApiError::BodyRead(_) => (StatusCode::BAD_REQUEST, "body-read", "Unreadable body"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Check(e) => match e {
                CheckError::UnknownTree { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown-tree",
                    "Unknown tree",
                ),
                CheckError::TreeRequired { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "tree-required",
                    "Tree required",
                ),
                CheckError::Chain(ChainError::MissingDescriptor { .. }) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing-descriptor",
                    "Missing descriptor",
                ),
                CheckError::Chain(ChainError::InvalidDescriptor { .. }) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-descriptor",
                    "Invalid descriptor",
                ),
                CheckError::Chain(_) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-descriptors",
                    "Invalid descriptors",
                ),
                CheckError::CostTooLarge { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-cost",
                    "Invalid cost",
                ),
                CheckError::Store(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "Store unavailable",
                ),
            },
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready"),
            ApiError::Notify(e) => match e {
                NotifyError::NoRoute(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no-route",
                    "No Slack webhook configured",
                ),
                NotifyError::QueueFull { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue-full",
                    "Notification queue full",
                ),
                NotifyError::Outbox(_) | NotifyError::NotStarted => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outbox-unavailable",
                    "Notification outbox unavailable",
                ),
                // `From` turns these into `ApiError::Check`.
                NotifyError::Check(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                ),
            },
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.classify();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request rejected");
        }
        let body = ProblemBody {
            kind: format!("urn:limitree:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
        };
        // Serializing a struct of strings and a number cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let ApiError::MethodNotAllowed { allowed, .. } = &self
            && let Ok(allow) = HeaderValue::from_str(allowed)
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

impl From<NotifyError> for ApiError {
    /// A limiter failure while notifying is answered exactly as a check's.
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Check(e) => ApiError::Check(e),
            other => ApiError::Notify(other),
        }
    }
}

/// Router fallback: no route has this path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

/// Method-router fallback for routes that take only `POST`.
pub async fn post_only(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
        allowed: "POST".to_owned(),
    }
}

/// Method-router fallback for routes that take only `GET` (and so `HEAD`).
pub async fn get_only(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
        allowed: "GET, HEAD".to_owned(),
    }
}

/// The response for a handler that panicked (`CatchPanicLayer`): the panic is a
/// bug, but one request's bug must not take the connection or the server down.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic>".to_owned());
    tracing::error!(panic = %message, "handler panicked");
    ApiError::Internal.into_response()
}
