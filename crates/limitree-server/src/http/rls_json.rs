//! `POST /json`: envoyproxy/ratelimit's HTTP bridge for clients without gRPC.
//! The body is a `RateLimitRequest` in proto3 JSON; the answer is the
//! `RateLimitResponse` in proto3 JSON, with status 200 when `overall_code` is
//! not `OVER_LIMIT` and 429 when it is. The decision is the gRPC service's own
//! ([`crate::grpc::RateLimitServer::answer`]), so both answer alike.
//!
//! proto3 JSON as protobuf's JSON mapping writes it: field names in
//! lowerCamelCase (the original snake_case names are accepted too), enums by
//! name, 64-bit integers as strings (numbers accepted), `Duration` as
//! `"1.500s"`. Zero values are written out rather than left out, which every
//! proto3 JSON reader accepts.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::{read_body, require_json};
use super::problem::ApiError;
use super::request_id::RequestId;

/// A `RateLimitRequest` as proto3 JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    descriptors: Vec<JsonDescriptor>,
    #[serde(default, alias = "hits_addend", rename = "hitsAddend")]
    hits_addend: Option<JsonNumber>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDescriptor {
    #[serde(default)]
    entries: Vec<JsonEntry>,
    #[serde(default, alias = "hits_addend", rename = "hitsAddend")]
    hits_addend: Option<JsonNumber>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

/// proto3 JSON writes 64-bit integers as strings and accepts numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonNumber {
    Number(u64),
    Text(String),
}

impl JsonNumber {
    fn value(&self, field: &str) -> Result<u64, ApiError> {
        match self {
            JsonNumber::Number(n) => Ok(*n),
            JsonNumber::Text(t) => t.parse().map_err(|_| {
                ApiError::InvalidBody(vec![format!(
                    "`{field}` must be a whole number of 0 or more (a number or a string of digits)"
                )])
            }),
        }
    }
}

fn to_proto(request: JsonRequest) -> Result<RateLimitRequest, ApiError> {
    let hits_addend = match &request.hits_addend {
        None => 0,
        Some(n) => u32::try_from(n.value("hitsAddend")?).map_err(|_| {
            ApiError::InvalidBody(vec![
                "`hitsAddend` is a uint32: at most 4294967295".to_owned(),
            ])
        })?,
    };
    let mut descriptors = Vec::with_capacity(request.descriptors.len());
    for (i, d) in request.descriptors.into_iter().enumerate() {
        descriptors.push(RateLimitDescriptor {
            entries: d
                .entries
                .into_iter()
                .map(|e| Entry {
                    key: e.key,
                    value: e.value,
                })
                .collect(),
            hits_addend: match &d.hits_addend {
                None => None,
                Some(n) => Some(UInt64Value {
                    value: n.value(&format!("descriptors[{i}].hitsAddend"))?,
                }),
            },
            ..Default::default()
        });
    }
    Ok(RateLimitRequest {
        domain: request.domain,
        descriptors,
        hits_addend,
    })
}

/// A `RateLimitResponse` as proto3 JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResponse {
    overall_code: &'static str,
    statuses: Vec<JsonStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonStatus {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_limit: Option<JsonLimit>,
    limit_remaining: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_until_reset: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonLimit {
    name: String,
    requests_per_unit: u32,
    unit: &'static str,
}

fn code_name(code: i32) -> &'static str {
    Code::try_from(code).unwrap_or(Code::Unknown).as_str_name()
}

fn status_json(status: &DescriptorStatus) -> JsonStatus {
    JsonStatus {
        code: code_name(status.code),
        current_limit: status.current_limit.as_ref().map(|l| JsonLimit {
            name: l.name.clone(),
            requests_per_unit: l.requests_per_unit,
            unit: Unit::try_from(l.unit)
                .unwrap_or(Unit::Unknown)
                .as_str_name(),
        }),
        limit_remaining: status.limit_remaining,
        duration_until_reset: status
            .duration_until_reset
            .map(|d| format!("{}.{:03}s", d.seconds, d.nanos / 1_000_000)),
    }
}

fn from_proto(response: &RateLimitResponse) -> JsonResponse {
    JsonResponse {
        overall_code: code_name(response.overall_code),
        statuses: response.statuses.iter().map(status_json).collect(),
    }
}

/// The handler.
pub async fn json(
    State(state): State<AppState>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let bytes = read_body(body, &headers, state.max_body_bytes).await?;
    let request: JsonRequest = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::MalformedJson {
                message: e.to_string(),
                line: e.line(),
                column: e.column(),
            }
        } else {
            ApiError::InvalidBody(vec![format!(
                "not a RateLimitRequest: {e}; send e.g. {{\"domain\": \"notifications\", \"descriptors\": [{{\"entries\": [{{\"key\": \"category\", \"value\": \"errors\"}}]}}]}}"
            )])
        }
    })?;
    let request = to_proto(request)?;
    let response = state
        .rls
        .answer(&request, Some(&id))
        .await
        .map_err(ApiError::RateLimitService)?;
    let status = if response.overall_code == Code::OverLimit as i32 {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    Ok((status, Json(from_proto(&response))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_and_snake_case_and_string_numbers_are_read() {
        let text = r#"{"domain":"d","hits_addend":3,"descriptors":[{"entries":[{"key":"k","value":"v"}],"hitsAddend":"7"}]}"#;
        let request = to_proto(serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(request.hits_addend, 3);
        assert_eq!(
            request.descriptors[0].hits_addend,
            Some(UInt64Value { value: 7 })
        );
        assert_eq!(request.descriptors[0].entries[0].key, "k");
    }

    #[test]
    fn durations_are_written_as_proto3_json() {
        let status = DescriptorStatus {
            code: Code::OverLimit as i32,
            duration_until_reset: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 12,
                nanos: 500_000_000,
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(status_json(&status)).unwrap();
        assert_eq!(json["code"], "OVER_LIMIT");
        assert_eq!(json["durationUntilReset"], "12.500s");
        assert_eq!(json["limitRemaining"], 0);
    }
}
