//! `message/send`: starts or continues a task and, unless `configuration.blocking` is false,
//! waits until the turn ends (terminal or interrupted state) before answering with the task.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::engine::follow::turn_end;
use crate::engine::{Reply, Submitted};
use crate::protocol::{Message, MessageSendConfiguration, PushNotificationConfig};
use crate::rpc::error::RpcError;
use crate::rpc::{params, raw, Outcome, RpcContext};

/// Typed `MessageSendParams`.
pub struct SendParams {
    pub message: Message,
    pub blocking: bool,
    pub history_length: Option<usize>,
    pub push_config: Option<PushNotificationConfig>,
    pub metadata: Option<Map<String, Value>>,
}

/// `MessageSendParams` as well-formed requests send them.
#[derive(Deserialize)]
struct WireParams {
    message: Message,
    #[serde(default)]
    configuration: Option<MessageSendConfiguration>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// Parses `MessageSendParams` (shared with `message/stream`).
///
/// Params that deserialize as they are and keep the rules [`params::message`] checks are
/// taken at once; anything else (a missing `kind` to infer, `null` where an object belongs, an
/// error to name) goes through the checked path, which accepts the same and explains the rest.
pub fn parse(params: Option<&RawValue>) -> Result<SendParams, RpcError> {
    let wire = params
        .and_then(|raw| serde_json::from_str::<WireParams>(raw.get()).ok())
        .filter(|w| !w.message.message_id.is_empty() && !w.message.parts.is_empty());
    let WireParams { message, configuration, metadata } = match wire {
        Some(wire) => wire,
        None => checked(params)?,
    };
    let configuration = configuration.unwrap_or_default();
    let history_length = match configuration.history_length {
        Some(n) if n < 0 => {
            return Err(RpcError::invalid_params(format!(
                "params.configuration.historyLength must not be negative, got {n}"
            )))
        }
        other => other.map(|n| n as usize),
    };
    if let Some(push) = &configuration.push_notification_config {
        super::push_config::check_url(&push.url, "params.configuration.pushNotificationConfig.url")?;
    }
    Ok(SendParams {
        message,
        blocking: configuration.blocking.unwrap_or(true),
        history_length,
        push_config: configuration.push_notification_config,
        metadata,
    })
}

/// The message, configuration and metadata of params checked rule by rule, with errors that
/// name the offending field.
fn checked(params: Option<&RawValue>) -> Result<WireParams, RpcError> {
    let value = params.map(|raw| serde_json::from_str(raw.get())).transpose();
    let mut map = params::object(value.map_err(|e| RpcError::invalid_params(format!("params: {e}")))?)?;
    let message = params::message(map.remove("message"), "params.message")?;
    let configuration = match params::optional_object(&mut map, "configuration", "params")? {
        Some(v) => Some(params::typed(v, "params.configuration")?),
        None => None,
    };
    let metadata = match params::optional_object(&mut map, "metadata", "params")? {
        Some(v) => Some(params::typed(v, "params.metadata")?),
        None => None,
    };
    Ok(WireParams { message, configuration, metadata })
}

/// Handles `message/send`.
pub async fn handle(ctx: &RpcContext, params: Option<&RawValue>) -> Outcome {
    let p = parse(params)?;
    let reply = if p.blocking { Reply::AtTurnEnd } else { Reply::Now };
    let Submitted { applied, events, turn_end: ending, missed } =
        ctx.engine.submit(ctx.origin(), p.message, p.push_config, p.metadata, reply, None).await?;
    let Some(live) = events.filter(|_| p.blocking) else {
        return raw(&applied.task.task.with_history_length(p.history_length));
    };
    let (task_id, seq) = (applied.task.task.id.clone(), applied.seq);
    // Not held while the turn runs: the store takes its cached task without a copy when no
    // one else holds it.
    drop(applied);
    // Without the task as the turn ended (it came from the log), it is read back.
    let end = turn_end(ctx.engine.clone(), task_id.clone(), live, ending, missed, seq).await?;
    let store = &ctx.engine.backend().store;
    if let Some(snapshot) = end.and_then(|event| event.snapshot) {
        // The store may have left the turn's end for this answer to make durable.
        store.flushed(snapshot.unflushed).await.map_err(crate::engine::EngineError::from)?;
        let task = &snapshot.task.task;
        // The task as stored is the answer when no history is cut.
        let whole = task.history.as_ref().is_some_and(|h| p.history_length.is_none_or(|n| n == 0 || n >= h.len()));
        if let Some(json) = snapshot.json.as_deref().filter(|_| whole) {
            return Ok(json.to_owned());
        }
        return raw(&task.with_history_length(p.history_length));
    }
    // The turn's end came from the log, without its snapshot: whatever the store left
    // buffered is flushed before the task is read back and answered with.
    store.flushed(u64::MAX).await.map_err(crate::engine::EngineError::from)?;
    let stored = ctx.engine.task(&task_id).await?;
    raw(&stored.task.with_history_length(p.history_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    /// Well-formed params read directly give what the checked path gives.
    #[test]
    fn the_direct_read_agrees_with_the_checked_path() {
        for json in [
            r#"{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hi"}]}}"#,
            r#"{"message":{"messageId":"m1","role":"agent","taskId":null,"parts":[{"kind":"data","data":{"a":1}},{"kind":"file","file":{"uri":"https://x/y","mimeType":"text/plain"}}]},"configuration":{"blocking":false,"historyLength":2},"metadata":{"k":"v"}}"#,
            r#"{"message":{"messageId":"m1","role":"user","parts":[{"kind":"text","text":"hi","metadata":null}],"referenceTaskIds":["t0"]},"configuration":null,"extra":1}"#,
        ] {
            let direct: WireParams = serde_json::from_str(json).unwrap();
            let checked = checked(Some(&raw(json))).unwrap();
            assert_eq!(direct.message, checked.message, "{json}");
            assert_eq!(direct.configuration, checked.configuration, "{json}");
            assert_eq!(direct.metadata, checked.metadata, "{json}");
        }
    }

    /// What the direct read refuses still goes through the checked path: accepted when it
    /// can be normalized, otherwise named.
    #[test]
    fn params_the_direct_read_refuses_are_checked() {
        let inferred = parse(Some(&raw(r#"{"message":{"messageId":"m1","role":"user","parts":[{"text":"hi"}]}}"#)));
        assert_eq!(inferred.unwrap().message.text(), "hi");
        for (json, error) in [
            (r#"{"message":{"messageId":"m1","role":"user","parts":[]}}"#, "params.message.parts must not be empty"),
            (
                r#"{"message":{"messageId":"","role":"user","parts":[{"text":"x"}]}}"#,
                "params.message.messageId must not be empty",
            ),
            (r#"{"message":null}"#, "params.message must be an object, got null"),
            (r#"[1]"#, "params must be an object, got an array"),
        ] {
            let Err(e) = parse(Some(&raw(json))) else { panic!("{json} was accepted") };
            assert_eq!(e.message, error, "{json}");
        }
    }
}
