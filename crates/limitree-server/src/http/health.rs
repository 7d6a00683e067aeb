//! `GET /healthz` and `GET /readyz`.
//!
//! They answer different questions: `healthz` says the process is serving HTTP
//! (restart it if not); `readyz` says it can decide right now, because its store
//! answers (send it traffic only if so).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::problem::ApiError;

/// Always `200 {"status": "ok"}` while the server runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `200` when the store can decide, else `503` problem+json. The body also
/// says which policy is in force and whether it is **stale** (the config file
/// changed and failed to load): still `200`, since the running policy keeps
/// deciding exactly — a stale policy is for the operator to fix, not a reason
/// to take the instance out of rotation (every instance would read the same
/// bad file).
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.limiter.store();
    store.check_ready().await.map_err(ApiError::NotReady)?;
    let status = state.reload.status();
    let mut policy = json!({
        "hash": status.policy_hash,
        "loaded_at_ms": status.loaded_at_ms,
        "stale": status.stale_since_ms.is_some(),
    });
    if let (Some(since), Some(attempt)) = (status.stale_since_ms, &status.last_attempt) {
        let error = attempt.error.as_deref().unwrap_or_default();
        policy["stale_since_ms"] = json!(since);
        policy["error"] = json!(error);
        policy["detail"] = json!(format!(
            "policy: stale since {since} (Unix ms): the config file failed to load; the running policy (hash {}) keeps serving; error: {error}",
            status.policy_hash
        ));
    }
    Ok(Json(
        json!({ "status": "ready", "store": store.kind(), "policy": policy }),
    ))
}
