//! Discovery: agent cards at the host root, per agent, and the agent list, as the caller's app
//! and credentials allow (see [`super::auth`] for the visibility rules).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::auth::{agent_for, listed, tenant_of};
use super::AppState;
use crate::agents::card::{agent_card, CardOptions};
use crate::agents::Agent;
use crate::auth::Caller;
use crate::protocol::card::AgentCard;

/// Card routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/agent-card.json", get(default_card))
        .route("/.well-known/agent.json", get(default_card))
        .route("/agents", get(list))
        .route("/agents/{name}/.well-known/agent-card.json", get(card))
        .route("/agents/{name}/.well-known/agent.json", get(card))
}

/// The base URL clients reached us at: `--public-url`, else X-Forwarded-Proto/Host, else Host.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    base_url_of(state.options.public_url.as_deref(), headers)
}

/// The base URL from `--public-url` when set, else from the request's headers.
pub fn base_url_of(public_url: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_string();
    }
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or("").trim());
    let proto = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host").or_else(|| header("host")).filter(|h| !h.is_empty()).unwrap_or("localhost");
    format!("{proto}://{host}")
}

/// The public card of an agent, as this server describes it.
pub fn public_card(state: &AppState, agent: &Agent, headers: &HeaderMap) -> AgentCard {
    let options = CardOptions { auth_enabled: state.auth.enabled(), extended: false };
    agent_card(agent, &base_url(state, headers), options)
}

async fn default_card(State(state): State<AppState>, caller: Caller, headers: HeaderMap) -> Response {
    let name = match tenant_of(&state, &caller) {
        Ok(tenant) => tenant.agents.default_agent().to_string(),
        Err(e) => return e.into_response(),
    };
    card(State(state), caller, Path(name), headers).await
}

async fn card(State(state): State<AppState>, caller: Caller, Path(name): Path<String>, headers: HeaderMap) -> Response {
    match agent_for(&state, &caller, &name) {
        Ok((_, agent)) => Json(public_card(&state, &agent, &headers)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list(State(state): State<AppState>, caller: Caller, headers: HeaderMap) -> Response {
    let tenant = match tenant_of(&state, &caller) {
        Ok(tenant) => tenant,
        Err(e) => return e.into_response(),
    };
    let enabled = state.auth.enabled();
    let cards: Vec<AgentCard> = tenant
        .agents
        .iter()
        .filter(|a| listed(a.config.visibility, &caller, enabled))
        .map(|a| public_card(&state, a, &headers))
        .collect();
    Json(json!({"total": cards.len(), "agents": cards})).into_response()
}
