//! `tasks/get`: the task with at most `historyLength` most recent messages.

use serde_json::Value;

use crate::rpc::{params, raw, Outcome, RpcContext};

/// Handles `tasks/get`.
pub async fn handle(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let map = params::object(params)?;
    let task_id = params::task_id(&map)?;
    let history_length = params::history_length(map.get("historyLength"), "params.historyLength")?;
    let stored = super::owned_task(ctx, &task_id).await?;
    raw(&stored.task.with_history_length(history_length))
}
