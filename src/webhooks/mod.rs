//! Webhook triggers: other services start agents with an HTTP request to `/webhooks/...`.
//! An agent opts in with a `trigger` in its configuration; a request is routed to the agent
//! whose trigger `path` matches exactly, else to the agent named by `/webhooks/{agent}` (in
//! the default app). Apps' trigger paths are unique across apps ([`check_app_routes`], when an
//! app is created or changed). Then, in order: the method must be one the trigger accepts; the signature
//! must verify over the raw body (and a Standard Webhooks message must not be a replay); the
//! input template renders the message text (and the context template the context id); the task
//! goes through the same queue as any A2A task; and the answer follows the response mode:
//!
//! * `sync` waits for the turn to end (up to `timeout`) and answers with the agent's output,
//!   or `202` with the task id when it takes longer;
//! * `async` answers `202 {"task_id","status":"submitted"}` at once;
//! * `callback` answers the same and, when the turn ends, POSTs the task to the callback URL
//!   through the delivery component, signed with Standard Webhooks.

pub mod signature;
pub mod template;

use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::agents::Agent;
use crate::clock::now_ms;
use crate::config::{resolve_env, ResponseMode, SignatureScheme, TriggerConfig, TriggerInput};
use crate::delivery::Deliveries;
use crate::engine::follow::turn_end;
use crate::engine::{Engine, EngineError, Origin, Reply};
use crate::protocol::{parts_text, Message, MessageKind, Part, Role, Task, TaskState};
use crate::store::limits::{Hit, RateCounter};
use crate::store::CallbackTarget;
use crate::tenants::Tenant;
use template::RequestView;

/// The user recorded on tasks a webhook starts.
pub const WEBHOOK_USER: &str = "webhook";

/// A request to a webhook URL.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: String,
    /// The whole path, `/webhooks/...`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How a webhook was answered.
#[derive(Debug, Clone)]
pub enum WebhookReply {
    /// The turn ended within the sync timeout.
    Done { task: Box<Task> },
    /// Accepted; the task runs on (`state` is where it stands now).
    Accepted { task_id: String, context_id: String, state: TaskState },
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} not allowed; this trigger accepts {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Engine(#[from] EngineError),
}

/// The webhook trigger service.
#[derive(Clone)]
pub struct Webhooks {
    engine: Engine,
    deliveries: Deliveries,
    limits: Arc<dyn RateCounter>,
}

/// Replay records live this long (well beyond the 5-minute tolerance).
const REPLAY_WINDOW_MS: u64 = 86_400_000;

impl Webhooks {
    pub fn new(engine: Engine, deliveries: Deliveries, limits: Arc<dyn RateCounter>) -> Self {
        Webhooks { engine, deliveries, limits }
    }

    /// The agent a webhook path reaches, with its trigger.
    fn route(&self, path: &str) -> Result<(Arc<Tenant>, Arc<Agent>, TriggerConfig), WebhookError> {
        let tenants = self.engine.tenants().all();
        for tenant in &tenants {
            for agent in tenant.agents.iter() {
                if let Some(trigger) = agent.config.trigger.as_ref().filter(|t| t.path.as_deref() == Some(path)) {
                    let agent = tenant.agents.get(&agent.name).cloned();
                    return Ok((tenant.clone(), agent.ok_or_else(|| not_found(path))?, trigger.clone()));
                }
            }
        }
        let name = path.strip_prefix("/webhooks/").filter(|n| !n.contains('/')).ok_or_else(|| not_found(path))?;
        let tenant = tenants.first().cloned().ok_or_else(|| not_found(path))?;
        let agent = tenant.agents.get(name).cloned().ok_or_else(|| not_found(path))?;
        let trigger = agent
            .config
            .trigger
            .clone()
            .ok_or_else(|| WebhookError::NotFound(format!("agent {name} has no webhook trigger")))?;
        Ok((tenant, agent, trigger))
    }

    /// Handles one webhook request.
    pub async fn handle(&self, request: WebhookRequest) -> Result<WebhookReply, WebhookError> {
        let (tenant, agent, trigger) = self.route(&request.path)?;
        if !trigger.accepts(&request.method) {
            return Err(WebhookError::MethodNotAllowed {
                method: request.method.clone(),
                allowed: trigger.methods().join(", "),
            });
        }
        self.check_signature(&trigger, &agent.name, &request).await?;
        let (text, context_id) = message_input(&trigger.input, &request)?;
        let callback = match trigger.response.mode {
            ResponseMode::Callback => Some(self.callback_target(&trigger, &request.headers).await?),
            _ => None,
        };
        let message = Message {
            kind: MessageKind,
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::User,
            parts: vec![Part::text(text)],
            task_id: None,
            context_id,
            reference_task_ids: None,
            extensions: None,
            metadata: Some(serde_json::Map::from_iter([(
                "webhook".to_string(),
                serde_json::json!({ "path": request.path, "method": request.method }),
            )])),
        };
        let origin = Origin { app: &tenant.record.id, agent: &agent.name, user: WEBHOOK_USER };
        let sync = trigger.response.mode == ResponseMode::Sync;
        // A sync reply may come before the turn ends (its deadline), so the task is durable first.
        let reply = if sync { Reply::Following } else { Reply::Now };
        let submitted = self.engine.submit(origin, message, None, None, reply, callback).await?;
        let task = &submitted.applied.task.task;
        let accepted = |task: &Task| WebhookReply::Accepted {
            task_id: task.id.clone(),
            context_id: task.context_id.clone(),
            state: task.status.state,
        };
        let Some(live) = submitted.events.filter(|_| sync) else { return Ok(accepted(task)) };
        let task_id = task.id.clone();
        let end = turn_end(self.engine.clone(), task_id.clone(), live, None, submitted.missed, submitted.applied.seq);
        let finished =
            tokio::time::timeout(trigger.response.timeout(), async { Ok::<bool, EngineError>(end.await?.is_some()) })
                .await;
        let stored = self.engine.task(&task_id).await?;
        match finished {
            Ok(Ok(true)) => Ok(WebhookReply::Done { task: Box::new(stored.task) }),
            Ok(Err(e)) => Err(e.into()),
            _ => Ok(accepted(&stored.task)),
        }
    }

    async fn check_signature(
        &self,
        trigger: &TriggerConfig,
        agent: &str,
        request: &WebhookRequest,
    ) -> Result<(), WebhookError> {
        let Some(secret) = &trigger.secret else { return Ok(()) };
        let secret = resolve_env(secret).map_err(|e| WebhookError::Unauthorized(format!("trigger secret: {e}")))?;
        let scheme = trigger.signature.unwrap_or(SignatureScheme::HmacSha256);
        let now_s = now_ms() / 1000;
        signature::verify(scheme, &secret, trigger.signature_header.as_deref(), &request.headers, &request.body, now_s)
            .map_err(|e| WebhookError::Unauthorized(format!("bad webhook signature: {e}")))?;
        if scheme == SignatureScheme::StandardWebhooks {
            if let Some((id, at)) = signature::replay_key(&request.headers) {
                let hit = Hit { key: format!("webhook-replay:{agent}:{id}:{at}"), window_ms: REPLAY_WINDOW_MS };
                let seen = self
                    .limits
                    .hit(&[hit], at.saturating_mul(1000))
                    .await
                    .map_err(|e| WebhookError::Engine(EngineError::from(e)))?;
                if seen.first().is_some_and(|n| *n > 1) {
                    return Err(WebhookError::Unauthorized(format!("webhook {id} was already received (replay)")));
                }
            }
        }
        Ok(())
    }

    /// Where a callback goes: the trigger's URL, or the request's `X-Callback-URL` when the
    /// trigger allows it; checked by the SSRF guard now, so a bad URL is the sender's error.
    async fn callback_target(
        &self,
        trigger: &TriggerConfig,
        headers: &HeaderMap,
    ) -> Result<CallbackTarget, WebhookError> {
        let from_header = headers
            .get("x-callback-url")
            .and_then(|v| v.to_str().ok())
            .filter(|_| trigger.response.allow_callback_header)
            .map(str::to_string);
        let url = from_header
            .or_else(|| trigger.response.callback_url.clone())
            .ok_or_else(|| WebhookError::BadRequest("this trigger needs an X-Callback-URL header".into()))?;
        self.deliveries.check_target(&url).await.map_err(|e| WebhookError::BadRequest(format!("callback URL: {e}")))?;
        let secret = match trigger.response.callback_secret.as_ref().or(trigger.secret.as_ref()) {
            Some(secret) => {
                Some(resolve_env(secret).map_err(|e| WebhookError::BadRequest(format!("callback secret: {e}")))?)
            }
            None => None,
        };
        Ok(CallbackTarget { url, secret })
    }
}

/// Why an app's triggers cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteClash {
    /// An app agent's trigger without a path (`/webhooks/{agent}` serves the default app).
    NoPath(String),
    /// The path is already another app's.
    Taken(String),
}

/// The webhook paths a tenant's agents answer at, with their agents: explicit trigger paths,
/// and for the default app `/webhooks/{agent}` of every agent with a trigger.
fn routes_of(tenant: &Tenant) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for agent in tenant.agents.iter() {
        let Some(trigger) = &agent.config.trigger else { continue };
        if let Some(path) = &trigger.path {
            routes.push((path.clone(), agent.name.clone()));
        }
        if tenant.record.id == crate::store::tenants::DEFAULT_APP {
            routes.push((format!("/webhooks/{}", agent.name), agent.name.clone()));
        }
    }
    routes
}

/// Checks that the triggers of app `app_id`'s new configuration can be routed: each has a
/// path, and no other app answers at it.
pub fn check_app_routes(
    tenants: &crate::tenants::Tenants,
    app_id: &str,
    config: &crate::config::Config,
) -> Result<(), RouteClash> {
    let others: Vec<(String, String, String)> = tenants
        .all()
        .iter()
        .filter(|t| t.record.id != app_id)
        .flat_map(|t| {
            routes_of(t).into_iter().map(|(path, agent)| (path, agent, t.record.name.clone())).collect::<Vec<_>>()
        })
        .collect();
    for (name, agent) in &config.agents.0 {
        let Some(trigger) = &agent.trigger else { continue };
        let Some(path) = &trigger.path else {
            return Err(RouteClash::NoPath(format!(
                "agents.{name}.trigger.path: an app's triggers need a path of their own (/webhooks/{{agent}} serves the default app's agents)"
            )));
        };
        if let Some((_, other_agent, other_app)) = others.iter().find(|(p, _, _)| p == path) {
            return Err(RouteClash::Taken(format!(
                "agents.{name}.trigger.path: {path} is already the trigger of agent {other_agent} of app {other_app}"
            )));
        }
    }
    Ok(())
}

fn not_found(path: &str) -> WebhookError {
    WebhookError::NotFound(format!("no webhook trigger at {path}"))
}

/// The message text and context id a request becomes. What templates see is built once, and
/// only for a trigger that has templates.
fn message_input(input: &TriggerInput, request: &WebhookRequest) -> Result<(String, Option<String>), WebhookError> {
    let view = std::cell::OnceCell::new();
    let render = |template: &str, what: &str| {
        template::render(template, view.get_or_init(|| request_view(request)))
            .map_err(|e| WebhookError::BadRequest(format!("{what} template: {e}")))
    };
    let text = match &input.template {
        Some(t) => render(t, "input")?,
        None => String::from_utf8_lossy(&request.body).into_owned(),
    };
    if text.trim().is_empty() {
        return Err(WebhookError::BadRequest("the webhook produced an empty message (empty body or template)".into()));
    }
    let context_id = match &input.context_id {
        Some(t) => Some(render(t, "context_id")?).filter(|c| !c.trim().is_empty()),
        None => None,
    };
    Ok((text, context_id))
}

/// The request as templates see it.
fn request_view(request: &WebhookRequest) -> RequestView {
    let raw = String::from_utf8_lossy(&request.body).into_owned();
    let body = serde_json::from_slice(&request.body).unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
    let query = request
        .query
        .as_deref()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    RequestView {
        body,
        raw,
        headers: crate::headers::joined(&request.headers),
        query,
        method: request.method.clone(),
        path: request.path.clone(),
    }
}

/// The text of a task's output: its artifacts' text parts, and its status message's.
pub fn output_text(task: &Task) -> (String, Option<String>) {
    let artifacts: Vec<String> = task.artifacts.iter().flatten().map(|a| parts_text(&a.parts)).collect();
    (artifacts.join("\n"), task.status.message.as_ref().map(Message::text))
}
