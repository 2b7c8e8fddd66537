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
    crate::headers::base_url(state.options.public_url.as_deref(), headers)
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
