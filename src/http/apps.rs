//! The admin API for apps (tenants), their tokens and the signing keys, and the public JWKS.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{store_error, AppState, HttpError};
use crate::clock::{ms_to_rfc3339, now_ms};
use crate::config::Config;
use crate::store::tenants::{is_valid_app_name, AppRecord, DEFAULT_APP};
use crate::webhooks::RouteClash;

/// `/.well-known/jwks.json`, served whether or not the admin API is on.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// `/admin/jwks`: inside the admin API, but public key material needs no secret.
pub fn jwks_router() -> Router<AppState> {
    Router::new().route("/admin/jwks", get(jwks))
}

/// `/admin/apps*` and `/admin/keys/rotate`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/apps", get(list).post(create))
        .route("/admin/apps/{id}", get(show).put(update).delete(delete))
        .route("/admin/apps/{id}/token", post(token))
        .route("/admin/keys/rotate", post(rotate))
}

async fn jwks(State(state): State<AppState>) -> Response {
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], Json(state.auth.jwks())).into_response()
}

/// An app as the admin API shows it.
fn view(app: &AppRecord) -> Value {
    json!({
        "id": app.id,
        "name": app.name,
        "config_json": app.config_json,
        "created_at": ms_to_rfc3339(app.created_ms),
        "updated_at": ms_to_rfc3339(app.updated_ms),
    })
}

fn bad_request(message: impl Into<String>) -> HttpError {
    HttpError(StatusCode::BAD_REQUEST, message.into())
}

/// The body of `POST /admin/apps` and `PUT /admin/apps/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppBody {
    name: Option<String>,
    /// The agents configuration: JSON (or YAML) text, or a JSON object.
    config_json: Option<Value>,
}

fn parse_body(body: &[u8]) -> Result<AppBody, HttpError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

fn check_name(name: &str) -> Result<(), HttpError> {
    if is_valid_app_name(name) {
        Ok(())
    } else {
        Err(bad_request(format!("name: app names are 1-64 letters, digits, `-` or `_`, got {name:?}")))
    }
}

/// Validates an app configuration, and that its webhook triggers have paths no other app
/// answers at; the error names the offending key.
fn check_config(state: &AppState, app_id: &str, config: &Value) -> Result<String, HttpError> {
    let text = match config {
        Value::String(text) => text.clone(),
        Value::Object(_) => config.to_string(),
        other => {
            return Err(bad_request(format!(
                "config_json: expected the agents configuration as a JSON string or object, got {}",
                crate::rpc::params::type_name(other)
            )))
        }
    };
    let parsed = Config::parse(&text).map_err(|e| bad_request(e.to_string()))?;
    crate::webhooks::check_app_routes(state.engine.tenants(), app_id, &parsed).map_err(|clash| match clash {
        RouteClash::NoPath(m) => bad_request(m),
        RouteClash::Taken(m) => HttpError(StatusCode::CONFLICT, m),
    })?;
    Ok(serde_json::to_string(&parsed).unwrap_or(text))
}

fn not_found(id: &str) -> HttpError {
    HttpError(StatusCode::NOT_FOUND, format!("App {id} not found"))
}

fn default_is_the_file(action: &str) -> HttpError {
    HttpError(StatusCode::FORBIDDEN, format!("the default app is config.yaml and cannot be {action}; edit the file"))
}

async fn find(state: &AppState, id: &str) -> Result<AppRecord, HttpError> {
    let apps = state.engine.tenants().store().apps().await.map_err(store_error)?;
    apps.into_iter().find(|a| a.id == id).ok_or_else(|| not_found(id))
}

/// Applies a write here at once (other instances reload on the store's notice).
async fn reload(state: &AppState) -> Result<(), HttpError> {
    state.engine.tenants().reload().await.map_err(store_error)
}

fn token_response(state: &AppState, app: &AppRecord) -> Result<Value, HttpError> {
    let token = state.auth.mint(app).map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(json!({"access_token": token, "token_type": "bearer", "issuer": state.auth.issuer()}))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, HttpError> {
    let mut apps = state.engine.tenants().store().apps().await.map_err(store_error)?;
    apps.sort_by(|a, b| {
        (a.id != DEFAULT_APP, a.created_ms, &a.name).cmp(&(b.id != DEFAULT_APP, b.created_ms, &b.name))
    });
    Ok(Json(json!({ "apps": apps.iter().map(view).collect::<Vec<_>>() })))
}

async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, HttpError> {
    let body = parse_body(&body)?;
    let name = body.name.ok_or_else(|| bad_request("name is required"))?;
    check_name(&name)?;
    let config = body.config_json.ok_or_else(|| bad_request("config_json is required"))?;
    let id = format!("app_{}", uuid::Uuid::new_v4().simple());
    let config_json = check_config(&state, &id, &config)?;
    let now = now_ms();
    let app = AppRecord { id, name, config_json, created_ms: now, updated_ms: now, token_generation: 0 };
    state.engine.tenants().store().put_app(&app).await.map_err(store_error)?;
    reload(&state).await?;
    let mut answer = token_response(&state, &app)?;
    answer["app"] = view(&app);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, HttpError> {
    Ok(Json(view(&find(&state, &id).await?)))
}

async fn update(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, HttpError> {
    let body = parse_body(&body)?;
    if id == DEFAULT_APP {
        return Err(default_is_the_file("changed"));
    }
    let mut app = find(&state, &id).await?;
    if body.name.is_none() && body.config_json.is_none() {
        return Err(bad_request("nothing to update: send name and/or config_json"));
    }
    if let Some(name) = body.name {
        check_name(&name)?;
        app.name = name;
    }
    if let Some(config) = body.config_json {
        app.config_json = check_config(&state, &id, &config)?;
    }
    app.updated_ms = now_ms();
    state.engine.tenants().store().put_app(&app).await.map_err(store_error)?;
    reload(&state).await?;
    Ok(Json(view(&app)))
}

async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, HttpError> {
    if id == DEFAULT_APP {
        return Err(default_is_the_file("deleted"));
    }
    if !state.engine.tenants().store().delete_app(&id).await.map_err(store_error)? {
        return Err(not_found(&id));
    }
    reload(&state).await?;
    // The app's tasks go too: its running turns are canceled and its queued jobs dropped. In
    // the background: an app may have many tasks, and none is reachable any more.
    let engine = state.engine.clone();
    tokio::spawn(async move {
        match engine.purge_app(&id).await {
            Ok(removed) => tracing::info!(app = %id, removed, "removed the tasks of a deleted app"),
            Err(e) => tracing::warn!(app = %id, error = %e, "could not remove every task of a deleted app"),
        }
    });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TokenQuery {
    revoke_previous: Option<String>,
}

async fn token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Result<Json<Value>, HttpError> {
    let revoke = match query.revoke_previous.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => return Err(bad_request(format!("revoke_previous must be true or false, got {other:?}"))),
    };
    let mut app = find(&state, &id).await?;
    if revoke {
        app.token_generation += 1;
        app.updated_ms = now_ms();
        state.engine.tenants().store().put_app(&app).await.map_err(store_error)?;
        reload(&state).await?;
    }
    Ok(Json(token_response(&state, &app)?))
}

async fn rotate(State(state): State<AppState>) -> Result<Json<Value>, HttpError> {
    let kid = state.auth.rotate().await.map_err(|e| HttpError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(Json(json!({"kid": kid, "keys": state.auth.jwks()["keys"]})))
}
