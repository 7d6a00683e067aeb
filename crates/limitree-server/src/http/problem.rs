//! The one place errors become HTTP statuses: every failure an endpoint can
//! report is an [`ApiError`], and only [`ApiError::into_response`] decides its
//! status and its `application/problem+json` body (RFC 9457).
//!
//! Keeping the mapping here means a handler says *what* went wrong and never
//! picks a status code, and every error a client sees has the same shape.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use limitree::inspect::InspectError;
use limitree::{ChainError, CheckError, StoreError};

use crate::auth::Refusal;
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
    /// The body did not arrive in full within `[server] body_timeout`.
    #[error(
        "the body did not arrive within {} ms of the request head; send it at once",
        after.as_millis()
    )]
    BodyTimeout {
        /// `body_timeout`.
        after: std::time::Duration,
    },
    /// hyper could not parse the request head, and answered before any
    /// handler saw it; [`crate::listener`] puts this body on its answer.
    #[error("{}", .0.detail())]
    MalformedHead(HeadError),
    /// The server is at `max_connections` with a request in progress on each.
    #[error(
        "the server is at its limit of {max} open connections, each with a request in progress; retry shortly"
    )]
    TooManyConnections {
        /// `max_connections`.
        max: usize,
    },
    /// No route has this path.
    #[error(
        "no endpoint at `{0}`; the API has POST /v1/check, POST /v1/notify, POST /json, GET /v1/policy, GET /v1/buckets, GET|DELETE /v1/buckets/{{tree}}/{{level}}/{{bucket}}, GET /v1/status, GET /healthz, GET /readyz, GET /metrics and GET / (the status page)"
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
    /// `POST /json`: the rate limit service refused the request.
    #[error("{}", .0.message())]
    RateLimitService(tonic::Status),
    /// Introspection: the tree named in a path or query does not exist.
    #[error("{0}")]
    UnknownTree(String),
    /// Introspection: a bucket could not be named, read or reset.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Introspection: a bucket path segment that does not decode.
    #[error("{0}")]
    InvalidBucket(String),
    /// A query parameter that is missing, unknown, repeated or out of range.
    #[error("{0}")]
    InvalidQuery(String),
    /// `POST /v1/reload`: nothing to reload, or the file is invalid (the
    /// running policy keeps serving).
    #[error("{0}")]
    Reload(crate::reload::ReloadError),
    /// `[server.auth]`: the request has no token, a wrong one, or one whose
    /// scope is too small for its path (see [`crate::http::auth`]).
    #[error("{refusal}")]
    Unauthorized {
        /// What was wrong with the credentials.
        refusal: Refusal,
        /// The scope the path needs (`check` or `admin`), for `WWW-Authenticate`.
        needed: &'static str,
    },
    /// A handler panicked: a bug, reported without details.
    #[error("the server failed while handling this request; it has been logged")]
    Internal,
}

/// What was wrong with a request head hyper refused, by the status it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: not valid HTTP/1.1 (the request line, a header, `Content-Length`).
    Invalid,
    /// 414: the request target is longer than hyper reads (64 KiB).
    UriTooLong,
    /// 431: more than 100 headers, or a head larger than hyper buffers (~400 KiB).
    TooLarge,
}

impl HeadError {
    /// The error behind hyper's automatic answer with this status.
    pub fn from_status(status: u16) -> Option<HeadError> {
        match status {
            400 => Some(HeadError::Invalid),
            414 => Some(HeadError::UriTooLong),
            431 => Some(HeadError::TooLarge),
            _ => None,
        }
    }

    fn detail(self) -> &'static str {
        match self {
            HeadError::Invalid => {
                "the request line or a header is not valid HTTP/1.1 (e.g. a Content-Length that is not a number or is given twice with different values, a malformed header, an unsupported version); the connection is closed"
            }
            HeadError::UriTooLong => {
                "the request target is longer than 65534 bytes; send long values in the JSON body"
            }
            HeadError::TooLarge => {
                "the request head has more than 100 headers or is larger than about 400 KiB; send fewer or shorter headers"
            }
        }
    }
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
            ApiError::BodyTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timed out",
            ),
            ApiError::MalformedHead(HeadError::Invalid) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
            ),
            ApiError::MalformedHead(HeadError::UriTooLong) => {
                (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long")
            }
            ApiError::MalformedHead(HeadError::TooLarge) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request headers too large",
            ),
            ApiError::TooManyConnections { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-connections",
                "Too many connections",
            ),
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
                // The store and this build disagree about the script's
                // protocol: a bug to report, not an outage to wait out.
                CheckError::Store(StoreError::Protocol(_)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store-protocol",
                    "Store protocol error",
                ),
                CheckError::Store(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "Store unavailable",
                ),
            },
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready"),
            // The gRPC code the service chose, as its HTTP counterpart.
            ApiError::RateLimitService(status) => match status.code() {
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => (
                    StatusCode::BAD_REQUEST,
                    "invalid-rate-limit-request",
                    "Invalid RateLimitRequest",
                ),
                tonic::Code::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "Store unavailable",
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                ),
            },
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
            ApiError::UnknownTree(_) => (StatusCode::NOT_FOUND, "unknown-tree", "Unknown tree"),
            ApiError::Inspect(e) => match e {
                InspectError::UnknownLevel { .. } => {
                    (StatusCode::NOT_FOUND, "unknown-level", "Unknown level")
                }
                InspectError::WrongValues { .. } | InspectError::Value(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid-bucket",
                    "Invalid bucket name",
                ),
                InspectError::Store(StoreError::Unsupported { .. }) => (
                    StatusCode::NOT_IMPLEMENTED,
                    "not-supported",
                    "Not supported by this store",
                ),
                InspectError::Store(StoreError::Protocol(_)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store-protocol",
                    "Store protocol error",
                ),
                InspectError::Store(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "Store unavailable",
                ),
            },
            ApiError::InvalidBucket(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-bucket",
                "Invalid bucket name",
            ),
            ApiError::InvalidQuery(_) => {
                (StatusCode::BAD_REQUEST, "invalid-query", "Invalid query")
            }
            ApiError::Reload(crate::reload::ReloadError::NoConfigFile) => (
                StatusCode::CONFLICT,
                "nothing-to-reload",
                "Nothing to reload",
            ),
            ApiError::Reload(crate::reload::ReloadError::Invalid(_)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "reload-invalid",
                "Config invalid; the running policy keeps serving",
            ),
            ApiError::Unauthorized { refusal, .. } => match refusal {
                Refusal::Missing => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
                Refusal::Invalid => (StatusCode::UNAUTHORIZED, "invalid-token", "Invalid token"),
                Refusal::Malformed => (
                    StatusCode::BAD_REQUEST,
                    "invalid-authorization",
                    "Malformed Authorization header",
                ),
                Refusal::InsufficientScope => (
                    StatusCode::FORBIDDEN,
                    "insufficient-scope",
                    "Insufficient scope",
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

impl ApiError {
    /// The status and the problem+json body.
    fn problem(&self) -> (StatusCode, Vec<u8>) {
        let (status, slug, title) = self.classify();
        let body = ProblemBody {
            kind: format!("urn:limitree:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
        };
        // Serializing a struct of strings and a number cannot fail.
        (status, serde_json::to_vec(&body).unwrap_or_default())
    }

    /// A whole HTTP/1.1 response that closes the connection, for the
    /// listener to write where hyper answers by itself (a head it could not
    /// parse), so that answer is problem+json too.
    pub fn to_http1_bytes(&self) -> Vec<u8> {
        let (status, json) = self.problem();
        tracing::debug!(status = status.as_u16(), error = %self, "request head rejected");
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            json.len()
        )
        .into_bytes();
        out.extend_from_slice(&json);
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, json) = self.problem();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request rejected");
        }
        let mut response = (status, json).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            ApiError::MethodNotAllowed { allowed, .. } => {
                if let Ok(allow) = HeaderValue::from_str(allowed) {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
            }
            // RFC 6750 §3: the challenge on every refusal, with the error
            // code when credentials were sent, and the scope when too small.
            ApiError::Unauthorized { refusal, needed } => {
                let mut challenge = "Bearer realm=\"limitree\"".to_owned();
                if let Some(code) = refusal.error_code() {
                    challenge.push_str(&format!(", error=\"{code}\""));
                }
                if *refusal == Refusal::InsufficientScope {
                    challenge.push_str(&format!(", scope=\"{needed}\""));
                }
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
            }
            // A connection slot frees when any request finishes.
            ApiError::TooManyConnections { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The connection cannot carry another request after a body that
            // stopped midway; say so rather than leave the client guessing.
            ApiError::BodyTimeout { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
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

/// Method-router fallback for a bucket: `GET` (and so `HEAD`) or `DELETE`.
pub async fn get_or_delete(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
        allowed: "GET, HEAD, DELETE".to_owned(),
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
