//! Request bodies: what Content-Type is accepted, reading within a size cap,
//! and turning JSON into an object with errors that say where and what.
//!
//! Bodies are read and parsed by hand rather than through axum's `Json`
//! extractor: its rejections are plain text and say little, while a client
//! deserves a problem+json that names the field and how to fix it.

use std::pin::pin;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::problem::ApiError;

/// The body is always read as JSON. A missing Content-Type, `application/json`,
/// any `+json` type, and `application/x-www-form-urlencoded` — what `curl -d`
/// sends unless told otherwise — are accepted, so the README's one-line curl
/// works; any other declared type (a multipart form, XML, text) is refused,
/// since such a body is not what the client meant to send.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let accepted = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || essence == "application/x-www-form-urlencoded";
    if accepted {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type `{text}` is not accepted; the body must be JSON: send it as `Content-Type: application/json`"
        )))
    }
}

/// Reads at most `limit` bytes, refusing early when `Content-Length` already
/// says the body is too large.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = pin!(body);
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(read_error)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// The error a request body yields when it has not arrived within
/// `[server] body_timeout` of its head (set by [`crate::listener`]); reading
/// it becomes a 408.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} ms", after.as_millis())]
pub struct BodyTimedOut {
    /// `body_timeout`.
    pub after: std::time::Duration,
}

/// A body read failure as an [`ApiError`]: a timeout is the client's pace,
/// anything else a broken body (a bad chunk size, a connection closed early).
fn read_error(e: axum::Error) -> ApiError {
    let e = e.into_inner();
    match e.downcast_ref::<BodyTimedOut>() {
        Some(timed_out) => ApiError::BodyTimeout {
            after: timed_out.after,
        },
        None => ApiError::BodyRead(e.to_string()),
    }
}

/// Parses `bytes` as a JSON object; `example` shows a valid body in the error
/// when it is some other JSON value.
pub fn json_object(bytes: &[u8], example: &str) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson {
        message: strip_position(&e),
        line: e.line(),
        column: e.column(),
    })?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(ApiError::InvalidBody(vec![format!(
            "the body must be a JSON object such as {example}; got {}",
            type_name(&other)
        )])),
    }
}

/// How a JSON value's type reads in a sentence.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message without its trailing " at line L column C", which
/// [`ApiError::MalformedJson`] states itself.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
