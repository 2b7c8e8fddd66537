//! `agent/getAuthenticatedExtendedCard`: there is no extended card until authentication lands,
//! so this answers -32007 (params may be absent or `{}`).

use serde_json::Value;

use crate::rpc::error::{RpcError, EXTENDED_CARD_NOT_CONFIGURED};
use crate::rpc::{Outcome, RpcContext};

/// Handles `agent/getAuthenticatedExtendedCard`.
pub async fn handle(_ctx: &RpcContext, params: Option<Value>) -> Outcome {
    match params {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(RpcError::invalid_params(format!(
                "params must be an object, got {}",
                crate::rpc::params::type_name(&other)
            )))
        }
    }
    Err(RpcError::new(EXTENDED_CARD_NOT_CONFIGURED, "Authenticated extended card is not configured"))
}
