//! The admin API for outgoing deliveries: list them newest first (filtered by kind, state or
//! source), and read one with every attempt.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query_count, store_error, AppState, HttpError};
use crate::clock::ms_to_rfc3339;
use crate::store::deliveries::{Delivery, DeliveryKind, DeliveryState};

/// `/admin/deliveries*`.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/deliveries", get(list)).route("/admin/deliveries/{id}", get(show))
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

/// A delivery as the admin API shows it (the body is left out; its size is given).
pub fn view(delivery: &Delivery) -> Value {
    let attempts: Vec<Value> = delivery
        .attempts
        .iter()
        .map(|a| {
            json!({
                "at": ms_to_rfc3339(a.at_ms),
                "status": a.status,
                "latency_ms": a.latency_ms,
                "error": a.error,
            })
        })
        .collect();
    json!({
        "id": delivery.id,
        "kind": delivery.kind,
        "source": delivery.source,
        "url": delivery.url,
        "method": delivery.method,
        "state": delivery.state,
        "signed": delivery.secret.is_some(),
        "body_size": delivery.body.len(),
        "created_at": ms_to_rfc3339(delivery.created_ms),
        "next_attempt_at": (delivery.state == DeliveryState::Pending).then(|| ms_to_rfc3339(delivery.next_ms)),
        "attempts": attempts,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    source: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(
    name: &str,
    value: Option<&str>,
    expected: &str,
) -> Result<Option<T>, HttpError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => serde_json::from_value(Value::String(v.to_string()))
            .map(Some)
            .map_err(|_| HttpError(StatusCode::BAD_REQUEST, format!("{name}: expected {expected}, got {v:?}"))),
    }
}

async fn list(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Result<Response, HttpError> {
    let kind: Option<DeliveryKind> = parse("kind", query.kind.as_deref(), "push, callback or forward")?;
    let wanted: Option<DeliveryState> = parse("state", query.state.as_deref(), "pending, delivered or failed")?;
    let source = query.source.filter(|s| !s.is_empty());
    let limit = query_count(query.limit.as_deref(), "limit", DEFAULT_PAGE, MAX_PAGE)?;
    let before = query.cursor.filter(|c| !c.is_empty());
    let keep = |d: &Delivery| {
        kind.is_none_or(|k| d.kind == k)
            && wanted.is_none_or(|s| d.state == s)
            && source.as_ref().is_none_or(|s| d.source == *s)
    };
    let (page, next) = state.deliveries.deliveries(keep, before, limit).await.map_err(store_error)?;
    let items: Vec<Value> = page.iter().map(view).collect();
    Ok(Json(json!({ "deliveries": items, "next_cursor": next })).into_response())
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, HttpError> {
    match state.deliveries.delivery(&id).await.map_err(store_error)? {
        Some(delivery) => Ok(Json(view(&delivery)).into_response()),
        None => Err(HttpError(StatusCode::NOT_FOUND, format!("delivery {id} not found"))),
    }
}
