//! System endpoints: `/health` and `/schema`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::config::Config;

/// `/health` and `/schema`.
pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/schema", get(schema))
}

/// 200 with the store kind and version; 503 when the store does not answer.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let store = &state.engine.backend().store;
    let version = env!("CARGO_PKG_VERSION");
    match store.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok", "store": store.kind(), "version": version}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "store": store.kind(), "version": version, "error": e.to_string()})),
        ),
    }
}

/// The JSON Schema of `config.yaml`, generated from the configuration types.
async fn schema() -> Json<serde_json::Value> {
    Json(Config::json_schema())
}
