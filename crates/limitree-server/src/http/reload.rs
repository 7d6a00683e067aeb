//! `POST /v1/reload`: reload the policy from the config file now (the admin
//! trigger of [`crate::reload`]; SIGHUP and a change of the file do the same).
//!
//! 200 `{"result": "ok", "policy_hash", "changed", "levels": {"kept",
//! "fresh", "dropped"}, "needs_restart": [...]}` when the file's policy is in
//! force; 422 problem+json `reload-invalid` (every error in `detail`, the
//! running policy still serving) when the file is invalid; 409
//! `nothing-to-reload` when the server runs the built-in default policy.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::problem::ApiError;

/// Reloads and says how it went. The body, if any, is ignored.
pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let reloaded = state
        .reload
        .reload("POST /v1/reload")
        .map_err(ApiError::Reload)?;
    Ok(Json(json!({
        "result": "ok",
        "policy_hash": reloaded.policy_hash,
        "changed": reloaded.changed,
        "levels": {
            "kept": reloaded.kept,
            "fresh": reloaded.fresh,
            "dropped": reloaded.dropped,
        },
        "needs_restart": reloaded.needs_restart,
    })))
}
