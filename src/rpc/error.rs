//! JSON-RPC error codes (JSON-RPC 2.0 and A2A v0.3.0) and the error type of the protocol layer.

use serde::Serialize;

use crate::engine::EngineError;

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// A2A: the task does not exist (or has expired).
pub const TASK_NOT_FOUND: i64 = -32001;
/// A2A: the task cannot be canceled (terminal).
pub const TASK_NOT_CANCELABLE: i64 = -32002;
/// A2A: push notifications are not supported.
pub const PUSH_NOT_SUPPORTED: i64 = -32003;
/// A2A: the operation is not supported.
pub const UNSUPPORTED_OPERATION: i64 = -32004;
/// A2A: incompatible content types.
pub const CONTENT_TYPE_NOT_SUPPORTED: i64 = -32005;
/// A2A: the agent produced an invalid response.
pub const INVALID_AGENT_RESPONSE: i64 = -32006;
/// A2A: no authenticated extended card is configured.
pub const EXTENDED_CARD_NOT_CONFIGURED: i64 = -32007;

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The backend is unreachable: a lone request is answered with HTTP 503 so clients and load
    /// balancers retry, not 200.
    #[serde(skip)]
    pub unavailable: bool,
    /// The method needs credentials the caller did not present: answered with HTTP 401.
    #[serde(skip)]
    pub unauthorized: bool,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), data: None, unavailable: false, unauthorized: false }
    }

    /// -32602 with a message that says what is wrong.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// -32600 with a message that says what is wrong.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    /// -32001 for a task id.
    pub fn task_not_found(task_id: &str) -> Self {
        Self::new(TASK_NOT_FOUND, format!("Task {task_id} not found"))
    }
}

impl From<EngineError> for RpcError {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::TaskNotFound(_) => TASK_NOT_FOUND,
            EngineError::NotCancelable { .. } => TASK_NOT_CANCELABLE,
            EngineError::InvalidParams(_) => INVALID_PARAMS,
            EngineError::Unavailable(_) => INTERNAL_ERROR,
        };
        let mut error = RpcError::new(code, e.to_string());
        error.unavailable = matches!(e, EngineError::Unavailable(_));
        error
    }
}
