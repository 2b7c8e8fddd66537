//! `message/send`: starts or continues a task and, unless `configuration.blocking` is false,
//! waits until the turn ends (terminal or interrupted state) before answering with the task.

use futures::StreamExt;
use serde_json::{Map, Value};

use crate::engine::follow::follow;
use crate::engine::Reply;
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

/// Parses `MessageSendParams` (shared with `message/stream`).
pub fn parse(params: Option<Value>) -> Result<SendParams, RpcError> {
    let mut map = params::object(params)?;
    let message = params::message(map.remove("message"), "params.message")?;
    let configuration: MessageSendConfiguration = match params::optional_object(&mut map, "configuration", "params")? {
        Some(v) => params::typed(v, "params.configuration")?,
        None => MessageSendConfiguration::default(),
    };
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
    let metadata = match params::optional_object(&mut map, "metadata", "params")? {
        Some(v) => Some(params::typed(v, "params.metadata")?),
        None => None,
    };
    Ok(SendParams {
        message,
        blocking: configuration.blocking.unwrap_or(true),
        history_length,
        push_config: configuration.push_notification_config,
        metadata,
    })
}

/// Handles `message/send`.
pub async fn handle(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let p = parse(params)?;
    let reply = if p.blocking { Reply::AtTurnEnd } else { Reply::Now };
    let submitted = ctx.engine.submit(ctx.origin(), p.message, p.push_config, p.metadata, reply, None).await?;
    let task_id = submitted.applied.task.task.id.clone();
    let Some(live) = submitted.events.filter(|_| p.blocking) else {
        return raw(&submitted.applied.task.task.with_history_length(p.history_length));
    };
    // Following handles lags, gaps and interrupted feeds by reading the task's log.
    let mut events = follow(ctx.engine.clone(), task_id.clone(), live, submitted.missed, submitted.applied.seq, true);
    while let Some(event) = events.next().await {
        let event = event?;
        if event.event.is_final() {
            if let Some(task) = &event.snapshot {
                // The worker's write may still await its fsync (`--fsync always`).
                ctx.engine.backend().store.flushed().await.map_err(crate::engine::EngineError::from)?;
                return raw(&task.task.with_history_length(p.history_length));
            }
            break;
        }
    }
    let stored = ctx.engine.task(&task_id).await?;
    raw(&stored.task.with_history_length(p.history_length))
}
