//! `message/stream`: like `message/send`, answered as Server-Sent Events: the Task first, then
//! every status and artifact update of the turn, closing after the final one.

use serde_json::value::RawValue;

use crate::engine::follow::follow;
use crate::engine::Reply;
use crate::rpc::error::{RpcError, INTERNAL_ERROR};
use crate::rpc::{RpcContext, Streamed};
use crate::store::LoggedEvent;

/// Handles `message/stream`.
pub async fn handle(ctx: &RpcContext, params: Option<&RawValue>) -> Streamed {
    let p = super::send::parse(params)?;
    let submitted =
        ctx.engine.submit(ctx.origin(), p.message, p.push_config, p.metadata, Reply::Following, None).await?;
    let applied = submitted.applied;
    let mut initial = vec![LoggedEvent { seq: applied.seq, event: applied.event().clone(), snapshot: None }];
    initial.extend(submitted.missed);
    let Some(live) = submitted.events else { return Err(RpcError::new(INTERNAL_ERROR, "no event subscription")) };
    let events = follow(ctx.engine.clone(), applied.task.task.id.clone(), live, initial, applied.seq, true);
    Ok(super::stream_items(events))
}
