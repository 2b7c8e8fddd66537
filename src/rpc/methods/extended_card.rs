//! `agent/getAuthenticatedExtendedCard`: the fuller card (internal skills included) for
//! authenticated callers. Without authentication there is no extended card (-32007); an
//! anonymous caller of a server with authentication gets HTTP 401.

use serde_json::Value;

use crate::agents::card::{agent_card, CardOptions};
use crate::rpc::error::{RpcError, EXTENDED_CARD_NOT_CONFIGURED, INVALID_REQUEST};
use crate::rpc::{raw, Outcome, RpcContext};

/// Handles `agent/getAuthenticatedExtendedCard`.
pub async fn handle(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    match params {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(RpcError::invalid_params(format!(
                "params must be an object, got {}",
                crate::rpc::params::type_name(&other)
            )))
        }
    }
    let card = &ctx.card;
    if !card.auth_enabled {
        return Err(RpcError::new(EXTENDED_CARD_NOT_CONFIGURED, "Authenticated extended card is not configured"));
    }
    if !card.authenticated {
        let mut error = RpcError::new(
            INVALID_REQUEST,
            "agent/getAuthenticatedExtendedCard needs an app token (Authorization: Bearer)",
        );
        error.unauthorized = true;
        return Err(error);
    }
    raw(&agent_card(&card.agent, &card.base_url(), CardOptions { auth_enabled: true, extended: true }))
}
