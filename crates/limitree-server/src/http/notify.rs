//! `POST /v1/notify`: one Slack notification, admitted (202) or suppressed
//! (429), and `GET /metrics`.
//!
//! The body is `{"tree"?, "category", "text", "blocks"?, "attachments"?}`;
//! `blocks` and `attachments` go to Slack as given. A 202 is sent only once the
//! notification is in the outbox, so an accepted notification survives a crash.
//! A suppressed one answers like a limited check (same body, `Retry-After`), and
//! is counted for the category's digest.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::AppState;
use super::body::{json_object, read_body, require_json, type_name};
use super::headers;
use super::problem::ApiError;
use super::reply::{AcceptedReply, CheckReply};
use super::request_id::RequestId;
use crate::denials::Source;
use crate::notify::{Submission, Submitted};

/// Fields a notify body may carry.
const FIELDS: &str = "`tree`, `category`, `text`, `blocks`, `attachments`";
/// Slack's own caps: at most 50 blocks and 100 attachments per message.
pub const MAX_BLOCKS: usize = 50;
/// See [`MAX_BLOCKS`].
pub const MAX_ATTACHMENTS: usize = 100;
/// Longest category: it is a descriptor value and a digest's subject.
pub const MAX_CATEGORY_CHARS: usize = 128;

/// The handler.
pub async fn notify(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&request_headers)?;
    let bytes = read_body(body, &request_headers, state.max_body_bytes).await?;
    let max_text = state.notify.settings().max_text_chars;
    let submission = parse(&bytes, max_text)?;

    let span = tracing::Span::current();
    span.record("tree", submission.tree.as_deref().unwrap_or("<default>"));
    span.record(
        "descriptors",
        tracing::field::debug(&[("category", &submission.category)]),
    );
    let request_id = request_id.map(|Extension(RequestId(id))| id);
    match state
        .notify
        .submit(submission, request_id.as_deref())
        .await?
    {
        Submitted::Accepted { id, decision } => {
            span.record("tree", decision.tree.as_str());
            tracing::info!(id, "notification accepted");
            let headers = headers::for_decision(&decision);
            let reply = AcceptedReply {
                id,
                decision: CheckReply::from(decision),
            };
            Ok((StatusCode::ACCEPTED, headers, Json(reply)).into_response())
        }
        Submitted::Suppressed(decision) => {
            span.record("tree", decision.tree.as_str());
            state.status.denials.record(Source::Notify, &decision);
            tracing::info!(reason = %decision.reason, "notification suppressed");
            let headers = headers::for_decision(&decision);
            Ok((
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                Json(CheckReply::from(decision)),
            )
                .into_response())
        }
    }
}

/// Parses and validates a notify body, collecting every problem.
pub fn parse(bytes: &[u8], max_text_chars: usize) -> Result<Submission, ApiError> {
    let object = json_object(bytes, r#"{"category": "errors", "text": "disk full"}"#)?;
    let mut problems = Vec::new();
    let mut tree = None;
    let mut category = None;
    let mut payload = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "tree" => match value {
                Value::String(t) => tree = Some(t),
                Value::Null => {}
                other => problems.push(format!(
                    "`tree` must be a string naming a tree; got {}",
                    type_name(&other)
                )),
            },
            "category" => match value {
                Value::String(c) if c.is_empty() => {
                    problems.push("`category` must not be empty".to_owned());
                }
                Value::String(c) if c.chars().count() > MAX_CATEGORY_CHARS => problems.push(format!(
                    "`category` is longer than {MAX_CATEGORY_CHARS} characters"
                )),
                Value::String(c) => category = Some(c),
                other => problems.push(format!(
                    "`category` must be a string such as \"errors\"; got {}",
                    type_name(&other)
                )),
            },
            "text" => match value {
                Value::String(t) if t.trim().is_empty() => {
                    problems.push("`text` must not be empty".to_owned());
                }
                Value::String(t) if t.chars().count() > max_text_chars => problems.push(format!(
                    "`text` is longer than {max_text_chars} characters; shorten it (Slack truncates long messages)"
                )),
                Value::String(t) => {
                    payload.insert(key, Value::String(t));
                }
                other => problems.push(format!(
                    "`text` must be a string; got {}",
                    type_name(&other)
                )),
            },
            "blocks" | "attachments" => {
                let max = if key == "blocks" {
                    MAX_BLOCKS
                } else {
                    MAX_ATTACHMENTS
                };
                match &value {
                    Value::Array(items) if items.len() > max => problems.push(format!(
                        "`{key}` has {} items; Slack takes at most {max}",
                        items.len()
                    )),
                    Value::Array(items) if items.iter().all(Value::is_object) => {
                        payload.insert(key, value);
                    }
                    Value::Array(_) => problems.push(format!(
                        "every item of `{key}` must be an object (see Slack's message formatting docs)"
                    )),
                    other => problems.push(format!(
                        "`{key}` must be an array of objects; got {}",
                        type_name(other)
                    )),
                }
            }
            other => problems.push(format!(
                "unknown field `{other}`; a notify body has {FIELDS}"
            )),
        }
    }
    if category.is_none() && !problems.iter().any(|p| p.starts_with("`category`")) {
        problems.push("`category` is required, e.g. \"category\": \"errors\"".to_owned());
    }
    if !payload.contains_key("text") && !problems.iter().any(|p| p.starts_with("`text`")) {
        problems.push(
            "`text` is required (Slack shows it in notifications, also when `blocks` are given)"
                .to_owned(),
        );
    }
    match category {
        Some(category) if problems.is_empty() => Ok(Submission {
            tree,
            category,
            payload: Value::Object(payload),
        }),
        _ => Err(ApiError::InvalidBody(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_attachments_pass_through() {
        let s = parse(
            br##"{"category": "errors", "text": "t", "blocks": [{"type": "divider"}], "attachments": [{"color": "#f00"}]}"##,
            100,
        )
        .unwrap();
        assert_eq!(s.payload["blocks"][0]["type"], "divider");
        assert_eq!(s.payload["attachments"][0]["color"], "#f00");
        assert!(s.payload.get("category").is_none());
    }

    #[test]
    fn every_problem_is_listed() {
        let err = parse(br#"{"text": "", "blocks": {}, "colour": 1}"#, 100)
            .unwrap_err()
            .to_string();
        for needle in [
            "`text` must not be empty",
            "`blocks`",
            "`colour`",
            "`category` is required",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
        let err = parse(br#"{"category": "c", "text": "123456"}"#, 5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than 5"), "{err}");
    }
}
