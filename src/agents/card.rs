//! Agent cards: how an agent describes itself to clients.

use serde_json::json;

use super::Agent;
use crate::config::Visibility;
use crate::protocol::card::{AgentCapabilities, AgentCard, AgentProvider, AgentSkill};

/// Which card to build.
#[derive(Debug, Clone, Copy, Default)]
pub struct CardOptions {
    /// Authentication is on: the card names the bearer scheme and offers the extended card.
    pub auth_enabled: bool,
    /// The authenticated extended card: internal skills included.
    pub extended: bool,
}

/// The card of one agent served under `base`.
pub fn agent_card(agent: &Agent, base: &str, options: CardOptions) -> AgentCard {
    let description = if agent.config.description.is_empty() {
        format!("{} agent", agent.name)
    } else {
        agent.config.description.clone()
    };
    let shown = |v: Visibility| v == Visibility::Public || (options.extended && v == Visibility::Internal);
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
            .filter(|s| shown(s.visibility))
            .map(|s| AgentSkill {
                id: s.id.clone(),
                name: s.name.clone(),
                description: if s.description.is_empty() { s.name.clone() } else { s.description.clone() },
                tags: s.tags.clone(),
                examples: s.examples.clone(),
            })
            .collect(),
        supports_authenticated_extended_card: options.auth_enabled,
        provider: AgentProvider { organization: "switchyard".into(), url: base.to_string() },
        security_schemes: options.auth_enabled.then(|| {
            json!({"bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An app token (ES256 JWT) issued by the admin API"
            }})
        }),
        // Public agents serve callers without a token too; the others require one.
        security: (options.auth_enabled && agent.config.visibility != Visibility::Public)
            .then(|| vec![json!({"bearer": []})]),
    }
}
