//! One file per JSON-RPC method: parse params into typed values, call the engine, shape the result.

pub mod cancel;
pub mod extended_card;
pub mod get;
pub mod push_config;
pub mod resubscribe;
pub mod send;
pub mod stream;

use futures::StreamExt;

use super::{raw, StreamItem};
use crate::store::LoggedEvent;

/// Turns followed events into stream items; an error after the stream started becomes its
/// last event.
pub fn stream_items(
    events: futures::stream::BoxStream<'static, Result<LoggedEvent, crate::engine::EngineError>>,
) -> futures::stream::BoxStream<'static, StreamItem> {
    events
        .map(|e| match e {
            Ok(e) => StreamItem { seq: Some(e.seq), payload: raw(&e.event) },
            Err(e) => StreamItem { seq: None, payload: Err(e.into()) },
        })
        .boxed()
}

/// The task, if it belongs to the agent addressed by the URL (another agent's task is not found).
async fn owned_task(
    ctx: &super::RpcContext,
    task_id: &str,
) -> Result<crate::store::StoredTask, super::error::RpcError> {
    let stored = ctx.engine.task(task_id).await?;
    if stored.app != ctx.app || stored.agent != ctx.agent {
        return Err(super::error::RpcError::task_not_found(task_id));
    }
    Ok(stored)
}
