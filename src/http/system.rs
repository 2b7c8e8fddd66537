//! System endpoints: `/health` and `/schema`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::config::Config;

/// `/health`, `/schema` and, with `--metrics`, `/metrics`.
pub fn router(metrics: bool) -> Router<AppState> {
    let router = Router::new().route("/health", get(health)).route("/schema", get(schema));
    if metrics {
        router.route("/metrics", get(render_metrics))
    } else {
        router
    }
}

/// Prometheus text format.
async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = match &state.metrics {
        Some(handle) => crate::observability::render(handle, state.engine.backend()).await,
        None => String::new(),
    };
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// 200 with the store kind, version and authentication settings; 503 when the store does not
/// answer.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let store = &state.engine.backend().store;
    let enabled = state.auth.enabled();
    let admin = state.auth.admin_enabled();
    let mut body = json!({
        "status": "ok",
        "store": store.kind(),
        "version": env!("CARGO_PKG_VERSION"),
        "auth": {"enabled": enabled, "type": if enabled { "jwt" } else { "none" }, "issuer": state.auth.issuer(), "admin": admin},
        "admin": {"enabled": admin},
    });
    match store.health().await {
        Ok(()) => (StatusCode::OK, Json(body)),
        Err(e) => {
            body["status"] = json!("unavailable");
            body["error"] = json!(e.to_string());
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

/// The JSON Schema of `config.yaml`, generated from the configuration types.
async fn schema() -> Json<serde_json::Value> {
    Json(Config::json_schema())
}
