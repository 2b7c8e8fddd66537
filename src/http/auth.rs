//! Authentication at the transport edge: the caller of each request, the admin guard of
//! `/admin/*`, and which agents a caller may see and call (visibility).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, HttpError};
use crate::agents::Agent;
use crate::auth::Caller;
use crate::config::Visibility;
use crate::tenants::Tenant;

/// 401 `{"error":"Unauthorized"}` with a `WWW-Authenticate` challenge; says nothing more.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({"error": "Unauthorized"})),
    )
        .into_response()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Response> {
        // The rate limiter has authenticated the request already.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let authorization = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        state.auth.authenticate(authorization).await.map_err(|_| unauthorized())
    }
}

/// Lets only requests with the admin secret through.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !state.auth.is_admin(authorization) {
        return unauthorized();
    }
    next.run(request).await
}

/// Whether a caller may call an agent of this visibility.
pub enum Access {
    Allowed,
    /// Needs a valid token: 401.
    Unauthenticated,
    /// Not shown to this caller: 404.
    Hidden,
}

/// Visibility rules: public agents serve everyone; internal ones need valid credentials once
/// authentication is on; private ones serve the admin secret only.
pub fn access(visibility: Visibility, caller: &Caller, auth_enabled: bool) -> Access {
    match visibility {
        Visibility::Public => Access::Allowed,
        Visibility::Internal if !auth_enabled || caller.is_authenticated() => Access::Allowed,
        Visibility::Internal => Access::Unauthenticated,
        Visibility::Private if *caller == Caller::Admin => Access::Allowed,
        Visibility::Private => Access::Hidden,
    }
}

/// Whether an agent appears in listings for this caller (private ones never do).
pub fn listed(visibility: Visibility, caller: &Caller, auth_enabled: bool) -> bool {
    visibility != Visibility::Private && matches!(access(visibility, caller, auth_enabled), Access::Allowed)
}

/// Why a caller cannot reach an agent.
pub enum Denied {
    /// 401: credentials needed (or the token's app is gone).
    Unauthorized,
    /// 404: no such agent for this caller.
    AgentNotFound(String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => unauthorized(),
            Denied::AgentNotFound(name) => {
                HttpError(StatusCode::NOT_FOUND, format!("agent {name} not found")).into_response()
            }
        }
    }
}

/// The caller's app.
pub fn tenant_of(state: &AppState, caller: &Caller) -> Result<Arc<Tenant>, Denied> {
    state.engine.tenants().get(caller.app()).ok_or(Denied::Unauthorized)
}

/// The agent `name` of the caller's app, if the caller may call it.
pub fn agent_for(state: &AppState, caller: &Caller, name: &str) -> Result<(Arc<Tenant>, Arc<Agent>), Denied> {
    let tenant = tenant_of(state, caller)?;
    let agent = tenant.agents.get(name).cloned().ok_or_else(|| Denied::AgentNotFound(name.to_string()))?;
    match access(agent.config.visibility, caller, state.auth.enabled()) {
        Access::Allowed => Ok((tenant, agent)),
        Access::Unauthenticated => Err(Denied::Unauthorized),
        Access::Hidden => Err(Denied::AgentNotFound(name.to_string())),
    }
}
