//! Discovery: agent cards at the host root, per agent, and the agent list.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{AppState, HttpError};
use crate::agents::Agent;
use crate::config::Visibility;
use crate::protocol::card::{AgentCapabilities, AgentCard, AgentProvider, AgentSkill};

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
    if let Some(url) = &state.options.public_url {
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

/// The card of one agent.
pub fn agent_card(agent: &Agent, base: &str) -> AgentCard {
    let description = if agent.config.description.is_empty() {
        format!("{} agent", agent.name)
    } else {
        agent.config.description.clone()
    };
    AgentCard {
        protocol_version: "0.3.0".into(),
        name: agent.name.clone(),
        description,
        url: format!("{base}/agents/{}", agent.name),
        preferred_transport: "JSONRPC".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities: AgentCapabilities { streaming: true, push_notifications: true, state_transition_history: true },
        default_input_modes: vec!["text/plain".into(), "application/json".into()],
        default_output_modes: vec!["text/plain".into(), "application/json".into()],
        skills: agent
            .config
            .skills
            .iter()
            .map(|s| AgentSkill {
                id: s.id.clone(),
                name: s.name.clone(),
                description: if s.description.is_empty() { s.name.clone() } else { s.description.clone() },
                tags: s.tags.clone(),
                examples: s.examples.clone(),
            })
            .collect(),
        supports_authenticated_extended_card: false,
        provider: AgentProvider { organization: "switchyard".into(), url: base.to_string() },
    }
}

/// An agent that may be shown without authentication (auth is not enforced yet, but private
/// agents are never listed or described).
pub fn visible(state: &AppState, name: &str) -> Result<Agent, HttpError> {
    let agents = state.engine.agents();
    match agents.get(name) {
        Some(agent) if agent.config.visibility != Visibility::Private => Ok(agent.clone()),
        _ => Err(HttpError(StatusCode::NOT_FOUND, format!("agent {name} not found"))),
    }
}

async fn default_card(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<AgentCard>, HttpError> {
    let name = state.engine.agents().default_agent().to_string();
    let agent = visible(&state, &name)?;
    Ok(Json(agent_card(&agent, &base_url(&state, &headers))))
}

async fn card(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<AgentCard>, HttpError> {
    let agent = visible(&state, &name)?;
    Ok(Json(agent_card(&agent, &base_url(&state, &headers))))
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Json<serde_json::Value> {
    let base = base_url(&state, &headers);
    let agents = state.engine.agents();
    let cards: Vec<AgentCard> =
        agents.iter().filter(|a| a.config.visibility != Visibility::Private).map(|a| agent_card(a, &base)).collect();
    Json(json!({"total": cards.len(), "agents": cards}))
}
