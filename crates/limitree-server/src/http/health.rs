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

/// `200` when the store can decide, else `503` problem+json.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.limiter.store();
    store.check_ready().await.map_err(ApiError::NotReady)?;
    Ok(Json(json!({ "status": "ready", "store": store.kind() })))
}
