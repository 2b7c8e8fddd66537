//! `tasks/cancel`: a live task becomes `canceled` (its running turn is stopped); a terminal task
//! is not cancelable (-32002).

use serde_json::Value;

use crate::rpc::{params, raw, Outcome, RpcContext};

/// Handles `tasks/cancel`.
pub async fn handle(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let map = params::object(params)?;
    let task_id = params::task_id(&map)?;
    super::owned_task(ctx, &task_id).await?;
    let stored = ctx.engine.cancel(&task_id).await?;
    raw(&stored.task.with_history_length(None))
}
