//! `ANY /webhooks/...`: webhook triggers (see [`crate::webhooks`]). A finished sync turn answers
//! 200 `{"task_id","context_id","status","output","message"}`; anything still running answers
//! 202 `{"task_id","context_id","status"}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;

use super::{read_body, AppState, HttpError};
use crate::webhooks::{output_text, WebhookError, WebhookReply, WebhookRequest};

/// The webhook routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/{*path}", any(webhook))
}

async fn webhook(State(state): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, state.options.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let request = WebhookRequest {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    };
    match state.webhooks.handle(request).await {
        Ok(WebhookReply::Done { task }) => {
            let (output, message) = output_text(&task);
            Json(json!({
                "task_id": task.id,
                "context_id": task.context_id,
                "status": task.status.state.as_str(),
                "output": output,
                "message": message,
            }))
            .into_response()
        }
        Ok(WebhookReply::Accepted { task_id, context_id, state }) => (
            StatusCode::ACCEPTED,
            Json(json!({ "task_id": task_id, "context_id": context_id, "status": state.as_str() })),
        )
            .into_response(),
        Err(WebhookError::MethodNotAllowed { method, allowed }) => {
            let mut response = HttpError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed; this trigger accepts {allowed}"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allowed) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        Err(WebhookError::NotFound(m)) => HttpError(StatusCode::NOT_FOUND, m).into_response(),
        Err(WebhookError::Unauthorized(m)) => HttpError(StatusCode::UNAUTHORIZED, m).into_response(),
        Err(WebhookError::BadRequest(m)) => HttpError(StatusCode::BAD_REQUEST, m).into_response(),
        Err(WebhookError::Engine(e)) => HttpError::from(e).into_response(),
    }
}
