//! The admin queue endpoints: statistics, the dead-letter queue and requeueing from it.
//! Part of the admin API (mounted with `--auth-secret`, behind the secret).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{store_error, AppState, HttpError};
use crate::clock::ms_to_rfc3339;
use crate::store::StoreError;

/// `/admin/queue/*`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/queue/stats", get(stats))
        .route("/admin/queue/dlq", get(dead_letters))
        .route("/admin/queue/dlq/{id}/requeue", post(requeue))
}

#[derive(Deserialize)]
struct AppQuery {
    app_id: Option<String>,
    limit: Option<String>,
}

/// The queue is shared by every app and its figures cover the deployment: `app_id` may name the
/// default app only.
fn check_app(query: &AppQuery) -> Result<(), HttpError> {
    match query.app_id.as_deref() {
        None | Some("") | Some("default") => Ok(()),
        Some(other) => Err(HttpError(StatusCode::NOT_FOUND, format!("App {other} not found"))),
    }
}

async fn stats(State(state): State<AppState>, Query(query): Query<AppQuery>) -> Response {
    if let Err(e) = check_app(&query) {
        return e.into_response();
    }
    match state.engine.backend().queue.stats().await {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// Default and largest number of dead letters listed.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

async fn dead_letters(State(state): State<AppState>, Query(query): Query<AppQuery>) -> Response {
    if let Err(e) = check_app(&query) {
        return e.into_response();
    }
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                let message = format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {raw:?}");
                return HttpError(StatusCode::BAD_REQUEST, message).into_response();
            }
        },
    };
    match state.engine.backend().queue.dead_letters(limit).await {
        Ok((letters, total)) => {
            let items: Vec<_> = letters
                .iter()
                .map(|l| {
                    json!({
                        "id": l.job.id,
                        "task_id": l.job.task_id,
                        "agent": l.job.agent,
                        "error": l.error,
                        "failed_at": ms_to_rfc3339(l.failed_ms),
                        "retry_count": l.job.attempt,
                    })
                })
                .collect();
            // `count` is the size of the whole dead-letter queue; `items` holds the newest `limit`.
            Json(json!({"items": items, "count": total})).into_response()
        }
        Err(e) => store_error(e).into_response(),
    }
}

async fn requeue(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.engine.backend().queue.requeue_dead_letter(&id).await {
        Ok(true) => Json(json!({"requeued": true})).into_response(),
        Ok(false) => HttpError(StatusCode::NOT_FOUND, format!("dead letter {id} not found")).into_response(),
        Err(StoreError::TaskNotFound(task)) => HttpError(
            StatusCode::CONFLICT,
            format!("the task of dead letter {id} ({task}) no longer exists; it cannot be requeued"),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}
