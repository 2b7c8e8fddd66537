//! The admin API for sessions (an app's A2A contexts): list them page by page, read one with its
//! events, delete one with its tasks. Sessions are listed in the order they began, so paging
//! with `page_token` returns each exactly once even while new sessions begin.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query_count, AppState, HttpError};
use crate::clock::ms_to_rfc3339;
use crate::cursor;
use crate::engine::sessions::SessionSummary;
use crate::store::tenants::DEFAULT_APP;

/// `/admin/sessions*`.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/sessions", get(list)).route("/admin/sessions/{id}", get(show).delete(delete))
}

/// Default and largest page of sessions.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 100;
/// Default and largest number of events of one session.
const DEFAULT_EVENT_LIMIT: usize = 100;
const MAX_EVENT_LIMIT: usize = 1000;

#[derive(Deserialize)]
struct ListQuery {
    app_id: Option<String>,
    user_id: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
}

#[derive(Deserialize)]
struct SessionQuery {
    app_id: Option<String>,
    limit: Option<String>,
}

/// The app a query names (the default app when it names none) and its name.
fn app_of(state: &AppState, app_id: Option<&str>) -> Result<(String, String), HttpError> {
    let id = app_id.filter(|id| !id.is_empty()).unwrap_or(DEFAULT_APP);
    match state.engine.tenants().get(id) {
        Some(tenant) => Ok((tenant.record.id.clone(), tenant.record.name.clone())),
        None => Err(HttpError(StatusCode::NOT_FOUND, format!("App {id} not found"))),
    }
}

/// Page tokens carry the position of the last session of the previous page.
const PAGE_TOKEN: &str = "sessions-after";

fn position_of(token: &str) -> Result<u64, HttpError> {
    cursor::decode(PAGE_TOKEN, token).ok_or_else(|| {
        HttpError(StatusCode::BAD_REQUEST, "page_token is not a token from a previous page of this listing".into())
    })
}

/// A session as the admin API shows it.
fn view(summary: &SessionSummary, app_name: &str) -> Value {
    let entry = &summary.entry;
    json!({
        "id": entry.id,
        "app_id": entry.app,
        "app_name": app_name,
        "user_id": entry.user_id,
        "created_at": ms_to_rfc3339(entry.created_ms),
        "last_update": ms_to_rfc3339(summary.last_update_ms),
        "event_count": summary.event_count,
        "task_ids": summary.task_ids,
    })
}

async fn list(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Result<Response, HttpError> {
    let (app, app_name) = app_of(&state, query.app_id.as_deref())?;
    let page_size = query_count(query.page_size.as_deref(), "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let after = match query.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => position_of(token)?,
        None => 0,
    };
    let user = query.user_id.as_deref().filter(|u| !u.is_empty());
    let page = state.engine.sessions(&app, user, after, page_size).await?;
    let sessions: Vec<Value> = page.sessions.iter().map(|s| view(s, &app_name)).collect();
    Ok(Json(json!({
        "sessions": sessions,
        "next_page_token": page.next_after.map(|after| cursor::encode(PAGE_TOKEN, after)).unwrap_or_default(),
    }))
    .into_response())
}

fn not_found(id: &str) -> HttpError {
    HttpError(StatusCode::NOT_FOUND, format!("Session {id} not found"))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Result<Response, HttpError> {
    let (app, app_name) = app_of(&state, query.app_id.as_deref())?;
    let limit = query_count(query.limit.as_deref(), "limit", DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT)?;
    let Some((summary, events)) = state.engine.session(&app, &id, limit).await? else {
        return Err(not_found(&id));
    };
    let mut body = view(&summary, &app_name);
    body["events"] = json!(events);
    Ok(Json(body).into_response())
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Result<Response, HttpError> {
    let (app, _) = app_of(&state, query.app_id.as_deref())?;
    if state.engine.delete_session(&app, &id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&id))
    }
}
