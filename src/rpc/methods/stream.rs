//! `message/stream`: like `message/send`, answered as Server-Sent Events: the Task first, then
//! every status and artifact update of the turn, closing after the final one.

use serde_json::Value;

use crate::engine::follow::follow;
use crate::rpc::{RpcContext, Streamed};
use crate::store::LoggedEvent;

/// Handles `message/stream`.
pub async fn handle(ctx: &RpcContext, params: Option<Value>) -> Streamed {
    let p = super::send::parse(params)?;
    let submitted = ctx.engine.submit(&ctx.agent, p.message, p.push_config, p.metadata).await?;
    let applied = submitted.applied;
    let first = LoggedEvent { seq: applied.seq, event: applied.event, snapshot: None };
    let events =
        follow(ctx.engine.clone(), applied.task.task.id.clone(), submitted.events, vec![first], applied.seq, true);
    Ok(super::stream_items(events))
}
