//! `POST /v1/check`: one rate-limit question, one decision.
//!
//! The body is read and validated by hand (see [`super::body`]) so every
//! problem is reported with the field and the fix. A limited check is still `200`: the decision *is* the answer.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use limitree::{CheckRequest, MAX_COST};
use serde_json::{Map, Value};

use super::AppState;
use super::body::{json_object, read_body, require_json, type_name};
use super::headers;
use super::problem::ApiError;
use super::reply::CheckReply;

/// Fields a check body may carry.
const FIELDS: &str = "`tree`, `descriptors`, `cost`, `dry_run`";

/// A validated check body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckBody {
    /// The tree, when named.
    pub tree: Option<String>,
    /// Descriptor key → value.
    pub descriptors: BTreeMap<String, String>,
    /// Units to take (default 1; 0 peeks).
    pub cost: u64,
    /// Answer without recording.
    pub dry_run: bool,
}

/// The handler.
pub async fn check(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&request_headers)?;
    let bytes = read_body(body, &request_headers, state.max_body_bytes).await?;
    let request = parse(&bytes)?;

    let span = tracing::Span::current();
    span.record("descriptors", tracing::field::debug(&request.descriptors));

    let decision = state
        .limiter
        .check(CheckRequest {
            tree: request.tree.as_deref(),
            descriptors: &request.descriptors,
            cost: request.cost,
            dry_run: request.dry_run,
        })
        .await?;
    // The tree actually decided (it may have been left to the default).
    span.record("tree", decision.tree.as_str());
    tracing::debug!(allowed = decision.allowed, reason = %decision.reason, "decided");
    state.checks.record(&decision);
    let headers = headers::for_decision(&decision);
    Ok((headers, Json(CheckReply::from(decision))).into_response())
}

/// Parses and validates a check body, collecting every problem.
pub fn parse(bytes: &[u8]) -> Result<CheckBody, ApiError> {
    let object = json_object(bytes, r#"{"descriptors": {"category": "errors"}}"#)?;

    let mut problems = Vec::new();
    let mut body = CheckBody {
        tree: None,
        descriptors: BTreeMap::new(),
        cost: 1,
        dry_run: false,
    };
    for (key, value) in object {
        match key.as_str() {
            "tree" => match value {
                Value::String(tree) => body.tree = Some(tree),
                Value::Null => {}
                other => problems.push(format!(
                    "`tree` must be a string naming a tree; got {}",
                    type_name(&other)
                )),
            },
            "descriptors" => match value {
                Value::Object(map) => body.descriptors = descriptors(map, &mut problems),
                other => problems.push(format!(
                    "`descriptors` must be an object of strings such as {{\"category\": \"errors\"}}; got {}",
                    type_name(&other)
                )),
            },
            "cost" => match cost(&value) {
                Ok(cost) => body.cost = cost,
                Err(problem) => problems.push(problem),
            },
            "dry_run" => match value {
                Value::Bool(dry_run) => body.dry_run = dry_run,
                other => problems.push(format!(
                    "`dry_run` must be true or false; got {}",
                    type_name(&other)
                )),
            },
            other => problems.push(format!(
                "unknown field `{other}`; a check body has {FIELDS}"
            )),
        }
    }
    if problems.is_empty() {
        Ok(body)
    } else {
        Err(ApiError::InvalidBody(problems))
    }
}

fn descriptors(map: Map<String, Value>, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        match value {
            Value::String(v) => {
                out.insert(key, v);
            }
            other => problems.push(format!(
                "descriptor `{key}` must be a string; got {} (write it in quotes)",
                type_name(&other)
            )),
        }
    }
    out
}

fn cost(value: &Value) -> Result<u64, String> {
    let Value::Number(n) = value else {
        return Err(format!(
            "`cost` must be a whole number from 0 to {MAX_COST}; got {}",
            type_name(value)
        ));
    };
    if let Some(cost) = n.as_u64() {
        // The limiter enforces MAX_COST too; checking here keeps every cost
        // problem in one message.
        if cost > MAX_COST {
            return Err(format!(
                "`cost` {cost} is larger than the maximum {MAX_COST}"
            ));
        }
        return Ok(cost);
    }
    if n.as_i64().is_some_and(|c| c < 0) || n.as_f64().is_some_and(|c| c < 0.0) {
        return Err(format!("`cost` must not be negative; got {n}"));
    }
    if n.as_f64().is_some_and(|c| c > MAX_COST as f64) {
        return Err(format!("`cost` {n} is larger than the maximum {MAX_COST}"));
    }
    Err(format!("`cost` must be a whole number; got {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let body = parse(br#"{"descriptors": {"category": "errors"}}"#).unwrap();
        assert_eq!(body.cost, 1);
        assert!(!body.dry_run);
        assert_eq!(body.tree, None);
    }

    #[test]
    fn every_problem_is_listed() {
        let err = parse(br#"{"cost": -1, "dry_run": "yes", "colour": 1, "descriptors": {"n": 5}}"#)
            .unwrap_err()
            .to_string();
        for needle in ["negative", "`dry_run`", "`colour`", "descriptor `n`"] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn malformed_json_says_where() {
        let err = parse(b"{\n  \"cost\": }").unwrap_err().to_string();
        assert!(err.contains("line 2 column"), "{err}");
    }
}
