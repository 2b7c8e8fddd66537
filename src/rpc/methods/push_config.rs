//! `tasks/pushNotificationConfig/{set,get,list,delete}`: where to POST a task's status changes.
//! A config without an `id` gets the task id; a task may have several configs.

use serde_json::Value;

use crate::protocol::{PushNotificationConfig, TaskPushNotificationConfig};
use crate::rpc::error::RpcError;
use crate::rpc::{params, raw, Outcome, RpcContext};

/// Push receivers must be absolute http(s) URLs.
pub fn check_url(url: &str, path: &str) -> Result<(), RpcError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => {
            Err(RpcError::invalid_params(format!("{path} must be an http or https URL, got scheme {}", u.scheme())))
        }
        Err(e) => Err(RpcError::invalid_params(format!("{path} is not a valid URL: {e}"))),
    }
}

fn bound(task_id: &str, config: PushNotificationConfig) -> TaskPushNotificationConfig {
    TaskPushNotificationConfig { task_id: task_id.to_string(), push_notification_config: config }
}

/// Handles `tasks/pushNotificationConfig/set`.
pub async fn set(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let mut map = params::object(params)?;
    let task_id = params::required_str(&map, "taskId", "params")?;
    let Some(config) = params::optional_object(&mut map, "pushNotificationConfig", "params")? else {
        return Err(RpcError::invalid_params("params.pushNotificationConfig is required"));
    };
    let mut config: PushNotificationConfig = params::typed(config, "params.pushNotificationConfig")?;
    check_url(&config.url, "params.pushNotificationConfig.url")?;
    config = crate::engine::with_default_id(config, &task_id);
    super::owned_task(ctx, &task_id).await?;
    ctx.engine
        .backend()
        .store
        .set_push_config(&task_id, config.clone())
        .await
        .map_err(crate::engine::EngineError::from)?;
    raw(&bound(&task_id, config))
}

/// Handles `tasks/pushNotificationConfig/get` (the first config when no id is given).
pub async fn get(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let map = params::object(params)?;
    let task_id = params::task_id(&map)?;
    let wanted = match map.get("pushNotificationConfigId") {
        Some(Value::String(id)) => Some(id.clone()),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(RpcError::invalid_params(format!(
                "params.pushNotificationConfigId must be a string, got {}",
                params::type_name(other)
            )))
        }
    };
    super::owned_task(ctx, &task_id).await?;
    let configs = ctx.engine.backend().store.push_configs(&task_id).await.map_err(crate::engine::EngineError::from)?;
    let found = match &wanted {
        Some(id) => configs.into_iter().find(|c| c.id.as_deref() == Some(id.as_str())),
        None => configs.into_iter().next(),
    };
    match found {
        Some(config) => raw(&bound(&task_id, config)),
        None => Err(RpcError::new(
            crate::rpc::error::TASK_NOT_FOUND,
            match wanted {
                Some(id) => format!("Push notification config {id} not found for task {task_id}"),
                None => format!("No push notification config found for task {task_id}"),
            },
        )),
    }
}

/// Handles `tasks/pushNotificationConfig/list`.
pub async fn list(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let map = params::object(params)?;
    let task_id = params::task_id(&map)?;
    super::owned_task(ctx, &task_id).await?;
    let configs = ctx.engine.backend().store.push_configs(&task_id).await.map_err(crate::engine::EngineError::from)?;
    let bound: Vec<_> = configs.into_iter().map(|c| bound(&task_id, c)).collect();
    raw(&bound)
}

/// Handles `tasks/pushNotificationConfig/delete`; the result is an explicit `null`.
pub async fn delete(ctx: &RpcContext, params: Option<Value>) -> Outcome {
    let map = params::object(params)?;
    let task_id = params::task_id(&map)?;
    let config_id = params::required_str(&map, "pushNotificationConfigId", "params")?;
    super::owned_task(ctx, &task_id).await?;
    let deleted = ctx
        .engine
        .backend()
        .store
        .delete_push_config(&task_id, &config_id)
        .await
        .map_err(crate::engine::EngineError::from)?;
    if !deleted {
        return Err(RpcError::new(
            crate::rpc::error::TASK_NOT_FOUND,
            format!("Push notification config {config_id} not found for task {task_id}"),
        ));
    }
    raw(&Value::Null)
}
