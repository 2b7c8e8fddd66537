//! `tasks/resubscribe`: follow a task from another connection. Without `Last-Event-ID` the
//! current Task comes first, then live events; with it, the log is replayed after that id.
//! A task with no turn running gets its snapshot (or the replay) and the stream closes.

use serde_json::Value;

use crate::engine::follow::resume;
use crate::rpc::{params, RpcContext, Streamed};

/// Handles `tasks/resubscribe`.
pub async fn handle(ctx: &RpcContext, params: Option<Value>) -> Streamed {
    let map = params::object(params)?;
    let task_id = params::task_id(&map)?;
    super::owned_task(ctx, &task_id).await?;
    let (_, events) = resume(&ctx.engine, &task_id, ctx.last_event_id).await?;
    Ok(super::stream_items(events))
}
