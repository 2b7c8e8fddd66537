//! The JSON-RPC 2.0 dispatcher of `POST /agents/{name}`: envelope validation, batches, method
//! table and response framing. Each method lives in `methods/`, parsing its params into typed
//! values before calling the engine.

pub mod error;
pub mod methods;
pub mod params;

use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::engine::Engine;
use error::RpcError;

/// What a method needs besides its params.
pub struct RpcContext {
    pub engine: Engine,
    /// The app (tenant) whose agent is addressed.
    pub app: String,
    /// The agent addressed by the URL.
    pub agent: String,
    /// The caller's user (a token's subject), recorded on the tasks it creates.
    pub user: String,
    /// `Last-Event-ID` of a resuming stream client.
    pub last_event_id: Option<u64>,
    /// What `agent/getAuthenticatedExtendedCard` needs.
    pub card: CardRequest,
}

impl RpcContext {
    /// Who a submitted message is for and from.
    pub fn origin(&self) -> crate::engine::Origin<'_> {
        crate::engine::Origin { app: &self.app, agent: &self.agent, user: &self.user }
    }
}

/// The addressed agent and how the caller may see its card.
pub struct CardRequest {
    pub agent: std::sync::Arc<crate::agents::Agent>,
    /// `--public-url`, else the card's URL comes from `headers` (see [`CardRequest::base_url`]).
    pub public_url: Option<String>,
    /// The request's headers (moved, not copied: only the extended card reads them).
    pub headers: axum::http::HeaderMap,
    pub auth_enabled: bool,
    pub authenticated: bool,
}

impl CardRequest {
    /// The base URL the card's `url` starts with.
    pub fn base_url(&self) -> String {
        crate::headers::base_url(self.public_url.as_deref(), &self.headers)
    }
}

/// One event of a streaming reply: its log sequence (the SSE `id:`) and its payload.
pub struct StreamItem {
    pub seq: Option<u64>,
    pub payload: Result<Box<RawValue>, RpcError>,
}

/// A unary method's outcome.
pub type Outcome = Result<Box<RawValue>, RpcError>;

/// A streaming method's outcome: errors before the stream starts are plain JSON responses.
pub type Streamed = Result<BoxStream<'static, StreamItem>, RpcError>;

/// The whole HTTP answer to a JSON-RPC body.
pub enum Answer {
    /// A serialized response (object or batch array).
    Json(Vec<u8>),
    /// The error response of a lone request that failed because the backend is unreachable.
    Unavailable(Vec<u8>),
    /// The error response of a lone request that needs credentials.
    Unauthorized(Vec<u8>),
    /// A stream and the request id its events carry.
    Stream { id: Box<RawValue>, events: BoxStream<'static, StreamItem> },
}

/// Serializes `value` into a raw JSON result.
pub fn raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, RpcError> {
    serde_json::value::to_raw_value(value).map_err(|e| RpcError::new(error::INTERNAL_ERROR, e.to_string()))
}

/// The `null` request id.
pub fn null_id() -> Box<RawValue> {
    serde_json::value::to_raw_value(&Value::Null).unwrap_or_default()
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    error: &'a RpcError,
}

/// The JSON-RPC response for one outcome.
pub fn response(id: &RawValue, outcome: &Result<Box<RawValue>, RpcError>) -> Vec<u8> {
    match outcome {
        // Two raw values between constants, in one allocation of the right size: what
        // serde_json writes for `Success` (a test compares them), without its reallocations.
        Ok(result) => {
            let (id, result) = (id.get().as_bytes(), result.get().as_bytes());
            let mut out = Vec::with_capacity(SUCCESS_HEAD.len() + id.len() + SUCCESS_RESULT.len() + result.len() + 1);
            out.extend_from_slice(SUCCESS_HEAD);
            out.extend_from_slice(id);
            out.extend_from_slice(SUCCESS_RESULT);
            out.extend_from_slice(result);
            out.push(b'}');
            out
        }
        Err(error) => serde_json::to_vec(&Failure { jsonrpc: "2.0", id, error }).unwrap_or_default(),
    }
}

const SUCCESS_HEAD: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":";
const SUCCESS_RESULT: &[u8] = b",\"result\":";

/// Handles a request body: one request or a batch.
pub async fn handle(ctx: &RpcContext, body: &[u8]) -> Answer {
    let parse_error = |e: serde_json::Error| {
        Answer::Json(response(&null_id(), &Err(RpcError::new(error::PARSE_ERROR, format!("Parse error: {e}")))))
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        // Not an object: the answer is a parse error or, for well-formed JSON, an invalid request.
        if first != Some(&b'{') {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return parse_error(e);
            }
        }
        // An object is read once, straight into its envelope (see `call`).
        return match call(ctx, body, false).await {
            Called::Done(id, Err(e)) if e.unavailable => Answer::Unavailable(response(&id, &Err(e))),
            Called::Done(id, Err(e)) if e.unauthorized => Answer::Unauthorized(response(&id, &Err(e))),
            Called::Done(id, outcome) => Answer::Json(response(&id, &outcome)),
            Called::Stream(id, events) => Answer::Stream { id, events },
        };
    }
    let items: Vec<Box<RawValue>> = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return parse_error(e),
    };
    if items.is_empty() {
        return Answer::Json(response(&null_id(), &Err(RpcError::invalid_request("empty batch"))));
    }
    let mut out = Vec::with_capacity(items.len() * 128);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let bytes = match call(ctx, item.get().as_bytes(), true).await {
            Called::Done(id, outcome) => response(&id, &outcome),
            Called::Stream(id, _) => {
                response(&id, &Err(RpcError::invalid_request("streaming methods cannot be batched")))
            }
        };
        out.extend_from_slice(&bytes);
    }
    out.push(b']');
    Answer::Json(out)
}

enum Called {
    Done(Box<RawValue>, Result<Box<RawValue>, RpcError>),
    Stream(Box<RawValue>, BoxStream<'static, StreamItem>),
}

/// The envelope as received. The id stays raw so it is echoed byte for byte (an integer
/// beyond 64 bits is a valid id and must not come back rounded).
#[derive(serde::Deserialize)]
struct Envelope {
    jsonrpc: Option<Value>,
    id: Option<Box<RawValue>>,
    method: Option<Value>,
    params: Option<Box<RawValue>>,
}

/// Validates the envelope and runs the method. `request` may be malformed JSON (a lone request
/// is not checked beforehand): its envelope's fields take any value, so reading it fails only
/// on a syntax error (a parse error) or on a duplicate field (an invalid request).
async fn call(ctx: &RpcContext, request: &[u8], in_batch: bool) -> Called {
    if request.trim_ascii_start().first() != Some(&b'{') {
        return Called::Done(null_id(), Err(RpcError::invalid_request("a request must be a JSON object")));
    }
    let envelope: Envelope = match serde_json::from_slice(request) {
        Ok(e) => e,
        Err(e) if e.is_syntax() || e.is_eof() || e.is_io() => {
            return Called::Done(null_id(), Err(RpcError::new(error::PARSE_ERROR, format!("Parse error: {e}"))))
        }
        Err(e) => return Called::Done(null_id(), Err(RpcError::invalid_request(format!("invalid request: {e}")))),
    };
    // A2A has no notifications: a missing id is answered with id null.
    let id = match envelope.id {
        None => null_id(),
        Some(id) if matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9' | b'n')) => id,
        Some(other) => {
            let kind = match other.get().as_bytes().first() {
                Some(b'{') => "an object",
                Some(b'[') => "an array",
                _ => "a boolean",
            };
            return Called::Done(
                null_id(),
                Err(RpcError::invalid_request(format!("id must be a string, a number or null, got {kind}"))),
            );
        }
    };
    match envelope.jsonrpc {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(other) => {
            return Called::Done(id, Err(RpcError::invalid_request(format!("jsonrpc must be \"2.0\", got {other}"))))
        }
        None => return Called::Done(id, Err(RpcError::invalid_request("jsonrpc is required and must be \"2.0\""))),
    }
    let method = match envelope.method {
        Some(Value::String(m)) => m,
        Some(other) => {
            return Called::Done(
                id,
                Err(RpcError::invalid_request(format!("method must be a string, got {}", params::type_name(&other)))),
            )
        }
        None => return Called::Done(id, Err(RpcError::invalid_request("method is required"))),
    };
    let params = envelope.params;
    let called = dispatch(ctx, &method, params, id, in_batch).await;
    let error_code = match &called {
        Called::Done(_, Err(e)) => Some(e.code),
        _ => None,
    };
    // Unknown methods share one label, so callers cannot grow the metric without bound.
    let label = if error_code == Some(error::METHOD_NOT_FOUND) { "unknown".to_string() } else { method };
    crate::observability::rpc_call(label, error_code);
    called
}

async fn dispatch(
    ctx: &RpcContext,
    method: &str,
    raw_params: Option<Box<RawValue>>,
    id: Box<RawValue>,
    in_batch: bool,
) -> Called {
    use methods::*;
    // `message/send` and `message/stream` read their params straight from the request's JSON;
    // the other methods take them as a JSON value.
    let reads_raw = matches!(method, "message/send" | "message/stream");
    let params = match raw_params.as_deref().filter(|_| !reads_raw).map(|raw| serde_json::from_str(raw.get())) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(e)) => return Called::Done(id, Err(RpcError::invalid_params(format!("params: {e}")))),
    };
    let outcome = match method {
        "message/send" => send::handle(ctx, raw_params.as_deref()).await,
        "tasks/get" => get::handle(ctx, params).await,
        "tasks/cancel" => cancel::handle(ctx, params).await,
        "tasks/pushNotificationConfig/set" | "tasks/pushNotification/set" => push_config::set(ctx, params).await,
        "tasks/pushNotificationConfig/get" | "tasks/pushNotification/get" => push_config::get(ctx, params).await,
        "tasks/pushNotificationConfig/list" => push_config::list(ctx, params).await,
        "tasks/pushNotificationConfig/delete" => push_config::delete(ctx, params).await,
        "agent/getAuthenticatedExtendedCard" => extended_card::handle(ctx, params).await,
        "message/stream" | "tasks/resubscribe" => {
            if in_batch {
                return Called::Done(
                    id,
                    Err(RpcError::invalid_request(format!("{method} streams and cannot be batched"))),
                );
            }
            let started = if method == "message/stream" {
                stream::handle(ctx, raw_params.as_deref()).await
            } else {
                resubscribe::handle(ctx, params).await
            };
            return match started {
                Ok(events) => Called::Stream(id, events),
                Err(e) => Called::Done(id, Err(e)),
            };
        }
        other => Err(RpcError::new(error::METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    };
    Called::Done(id, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_is_written_as_serde_writes_it() {
        #[derive(Serialize)]
        struct Success<'a> {
            jsonrpc: &'static str,
            id: &'a RawValue,
            result: &'a RawValue,
        }
        let raw = |json: &str| RawValue::from_string(json.to_string()).unwrap();
        for id in ["1", "\"req-\\u00e9\"", "null", "-7", "123456789012345678901234567890"] {
            for result in ["null", "{\"kind\":\"task\",\"id\":\"t1\",\"history\":[]}", "[1,2]", "\"x\""] {
                let (id, result) = (raw(id), raw(result));
                let expected = serde_json::to_vec(&Success { jsonrpc: "2.0", id: &id, result: &result }).unwrap();
                assert_eq!(response(&id, &Ok(result.clone())), expected);
            }
        }
    }
}
