//! The task engine: accepts messages, runs turns on a bounded worker pool, cancels, and lets
//! callers follow tasks. It is the only writer of task state (through [`TaskStore::apply`]).

pub mod follow;
pub mod sessions;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentEvent, RequestContext};
use crate::clock::now_ms;
use crate::delivery::Deliveries;
use crate::protocol::{Message, PushNotificationConfig, StreamEvent, Task, TaskKind, TaskState, TaskStatus};
use crate::store::{
    Applied, Backend, CallbackTarget, Change, Job, LoggedEvent, StoreError, StoredTask, Turn, TurnEndSubscription,
};
use crate::tenants::Tenants;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub workers: usize,
    pub max_attempts: u32,
    /// Base delay of the retry backoff.
    pub retry_base: Duration,
}

/// Errors the protocol layer maps to JSON-RPC codes.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Task {0} not found")]
    TaskNotFound(String),
    #[error("Task {id} is in terminal state {state} and cannot be canceled")]
    NotCancelable { id: String, state: &'static str },
    /// The request is not valid in the task's current state.
    #[error("{0}")]
    InvalidParams(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TaskNotFound(id) => EngineError::TaskNotFound(id),
            StoreError::TaskTerminal { id, state } => EngineError::InvalidParams(format!(
                "Task {id} is in terminal state {state} and cannot accept new messages"
            )),
            StoreError::Conflict(m) | StoreError::Superseded(m) => EngineError::InvalidParams(m),
            StoreError::TaskExists(id) => EngineError::InvalidParams(format!("Task {id} already exists")),
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
        }
    }
}

/// Runs tasks. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    tenants: Tenants,
    /// Cancellation tokens of turns running on this instance.
    running: Mutex<foldhash::HashMap<String, CancellationToken>>,
    push: Deliveries,
    options: EngineOptions,
    shutdown: CancellationToken,
}

/// Who a message is for and from: the app and agent addressed, and the caller's user.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub app: &'a str,
    pub agent: &'a str,
    pub user: &'a str,
}

/// When the caller of [`Engine::submit`] answers its client, which decides what must be
/// durable before it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// At once, with the task (a non-blocking send, a webhook's 202): no events needed.
    Now,
    /// With the turn's events as they come (a stream, a webhook that waits with a deadline).
    Following,
    /// Only when the turn ends (a blocking `message/send`): a new task may be written then.
    AtTurnEnd,
}

/// A submitted message: the task it created or continued and, when asked for, the turn's
/// events: `missed` (logged before the subscription reached other instances) followed by
/// `events`, a subscription opened before the write. A caller answered at the turn's end
/// also gets `turn_end`, the final event alone (see [`follow::turn_end`]).
pub struct Submitted {
    pub applied: Applied,
    pub events: Option<broadcast::Receiver<Arc<LoggedEvent>>>,
    pub turn_end: Option<oneshot::Receiver<Arc<LoggedEvent>>>,
    pub missed: Vec<LoggedEvent>,
}

impl Engine {
    /// An engine over `backend`; call [`Engine::start`] to run workers.
    pub fn new(backend: Backend, tenants: Tenants, push: Deliveries, options: EngineOptions) -> Self {
        Engine {
            inner: Arc::new(Inner {
                backend,
                tenants,
                running: Mutex::default(),
                push,
                options,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The backend (for health checks and admin views).
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The apps and their agents.
    pub fn tenants(&self) -> &Tenants {
        &self.inner.tenants
    }

    /// Recovers jobs interrupted by a previous stop, then starts the worker pool.
    pub async fn start(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
        let (requeued, dead) = self.inner.backend.queue.recover(self.inner.options.max_attempts).await?;
        if requeued + dead > 0 {
            tracing::info!(requeued, dead_lettered = dead, "recovered jobs from the previous run");
        }
        self.listen_for_cancellations();
        Ok((0..self.inner.options.workers.max(1))
            .map(|_| {
                let engine = self.clone();
                tokio::spawn(async move { engine.work().await })
            })
            .collect())
    }

    /// Stops turns running here when their task is canceled, on this instance or another.
    fn listen_for_cancellations(&self) {
        let mut canceled = self.inner.backend.bus.cancellations();
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                match canceled.recv().await {
                    Ok(task_id) => {
                        if let Some(token) = engine.running_token(&task_id) {
                            token.cancel();
                        }
                    }
                    // Missed notices only delay a stop: the turn's next write finds the task canceled.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Stops taking jobs and cancels running turns; their jobs stay queued for the next start.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.backend.queue.close();
    }

    /// Creates a task (or continues one when the message names `taskId`) for the origin's agent.
    pub async fn submit(
        &self,
        origin: Origin<'_>,
        mut message: Message,
        push_config: Option<PushNotificationConfig>,
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
        reply: Reply,
        callback: Option<CallbackTarget>,
    ) -> Result<Submitted, EngineError> {
        let Origin { app, agent, user } = origin;
        let follow = reply != Reply::Now;
        let job_id = uuid::Uuid::now_v7().to_string();
        let change = match message.task_id.clone() {
            Some(task_id) => {
                let stored = self.task(&task_id).await?;
                if stored.app != app || stored.agent != agent {
                    return Err(EngineError::TaskNotFound(task_id));
                }
                if let Some(context_id) = &message.context_id {
                    if context_id != &stored.task.context_id {
                        return Err(EngineError::InvalidParams(format!(
                            "params.message.contextId {context_id} does not match task {task_id}'s context {}",
                            stored.task.context_id
                        )));
                    }
                }
                message.context_id = Some(stored.task.context_id.clone());
                let push_config = push_config.map(|c| with_default_id(c, &task_id));
                Change::Continue {
                    task_id: task_id.clone(),
                    message,
                    job: new_job(job_id, &task_id, app, agent),
                    push_config,
                }
            }
            None => {
                // Time-ordered ids: a store's new keys land next to each other (in the embedded
                // store's memtables that is 20% of a message/send's throughput) and ids sort by age.
                let task_id = uuid::Uuid::now_v7().to_string();
                let new_context = message.context_id.is_none();
                let context_id = message.context_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                message.task_id = Some(task_id.clone());
                message.context_id = Some(context_id.clone());
                let task = Task {
                    kind: TaskKind,
                    id: task_id.clone(),
                    context_id,
                    status: TaskStatus::now(TaskState::Submitted, None),
                    history: Some(vec![message]),
                    artifacts: None,
                    metadata,
                };
                let push_config = push_config.map(|c| with_default_id(c, &task_id));
                Change::Create {
                    task,
                    agent: agent.to_string(),
                    user: user.to_string(),
                    job: new_job(job_id, &task_id, app, agent),
                    push_config,
                    new_context,
                    callback: callback.map(Box::new),
                    answered_at_turn_end: reply == Reply::AtTurnEnd,
                }
            }
        };
        let task_id = change.task_id().to_string();
        let bus = &self.inner.backend.bus;
        // Subscribed here before the write, so no event written here can be missed; when the
        // turn runs elsewhere, the subscription is extended and what was logged meanwhile read.
        let (events, turn_end) = match reply {
            Reply::Now => (None, None),
            Reply::Following => (Some(bus.subscribe_here(&task_id)), None),
            Reply::AtTurnEnd => {
                let TurnEndSubscription { events, turn_end } = bus.subscribe_to_turn_end_here(&task_id);
                (Some(events), Some(turn_end))
            }
        };
        let applied = self.inner.backend.store.apply(change).await?;
        self.notify(&applied);
        let mut missed = Vec::new();
        if follow && !applied.turn_here {
            bus.extend_to_remote(&task_id).await?;
            missed = self.inner.backend.store.events_after(&task_id, applied.seq).await?;
        }
        Ok(Submitted { applied, events, turn_end, missed })
    }

    /// The stored task, or `TaskNotFound`.
    pub async fn task(&self, task_id: &str) -> Result<StoredTask, EngineError> {
        self.inner.backend.store.get_task(task_id).await?.ok_or_else(|| EngineError::TaskNotFound(task_id.to_string()))
    }

    /// Cancels a live task; returns it in state `canceled`.
    pub async fn cancel(&self, task_id: &str) -> Result<StoredTask, EngineError> {
        let applied = self.inner.backend.store.apply(Change::Cancel { task_id: task_id.to_string() }).await.map_err(
            |e| match e {
                StoreError::TaskTerminal { id, state } => EngineError::NotCancelable { id, state },
                other => other.into(),
            },
        )?;
        if let Some(token) = self.running_token(task_id) {
            token.cancel();
        }
        self.notify(&applied);
        Ok((*applied.task).clone())
    }

    /// Removes every task and session of an app (a deleted app): live tasks are canceled
    /// first, which stops their turns and drops their jobs. Returns how many tasks were removed.
    pub async fn purge_app(&self, app: &str) -> Result<usize, EngineError> {
        let mut removed = 0;
        for task_id in self.inner.backend.store.task_ids_of_app(app).await? {
            removed += usize::from(self.remove_task(&task_id).await?);
        }
        self.forget_sessions_of_app(app).await?;
        Ok(removed)
    }

    /// Removes a task with its log; a live one is canceled first. False when it was gone.
    async fn remove_task(&self, task_id: &str) -> Result<bool, EngineError> {
        let store = &self.inner.backend.store;
        for _ in 0..3 {
            match store.remove_task(task_id).await {
                Ok(removed) => return Ok(removed),
                // Not terminal: cancel, then remove (a cancel racing the turn's own end is
                // refused as not cancelable, which is just as good).
                Err(StoreError::Conflict(_)) => {
                    let _ = self.cancel(task_id).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Unavailable(format!("Task {task_id} kept running while it was being removed")))
    }

    /// Follows a task: its current snapshot plus live events newer than the snapshot.
    pub async fn follow(
        &self,
        task_id: &str,
    ) -> Result<(StoredTask, broadcast::Receiver<Arc<LoggedEvent>>), EngineError> {
        let events = self.inner.backend.bus.subscribe(task_id).await?;
        let stored = self.task(task_id).await?;
        Ok((stored, events))
    }

    /// Live events of a task from now on.
    pub async fn subscribe(&self, task_id: &str) -> Result<broadcast::Receiver<Arc<LoggedEvent>>, EngineError> {
        Ok(self.inner.backend.bus.subscribe(task_id).await?)
    }

    /// Logged events after `seq`.
    pub async fn events_after(&self, task_id: &str, seq: u64) -> Result<Vec<LoggedEvent>, EngineError> {
        Ok(self.inner.backend.store.events_after(task_id, seq).await?)
    }

    fn running_token(&self, task_id: &str) -> Option<CancellationToken> {
        self.inner.running.lock().ok().and_then(|r| r.get(task_id).cloned())
    }

    /// Sends push notifications for a status change (never waits for them).
    fn notify(&self, applied: &Applied) {
        if let Some(callback) = applied.task.callback.as_ref().filter(|_| applied.event().is_final()) {
            self.inner.push.callback(&applied.task.task, callback);
        }
        if applied.push_configs.is_empty() {
            return;
        }
        if matches!(applied.event(), StreamEvent::Status(_) | StreamEvent::Task(_)) {
            self.inner.push.push(&applied.task.task, &applied.push_configs);
        }
    }

    /// One worker: takes jobs until the queue closes.
    async fn work(&self) {
        while let Some(job) = self.inner.backend.queue.next().await {
            self.run(job).await;
        }
    }

    /// Runs one turn; failures are retried with backoff and dead-lettered after the last attempt.
    async fn run(&self, job: Job) {
        let task_id = job.task_id.clone();
        let applied = match self.inner.backend.store.apply(Change::StartTurn { job: job.clone() }).await {
            Ok(applied) => applied,
            Err(StoreError::Unavailable(error)) => return self.fail_attempt(job, error).await,
            Err(e) => {
                // Canceled or superseded while queued: nothing to run.
                tracing::debug!(task_id, error = %e, "skipping job");
                self.inner.backend.queue.discard(&job).await;
                return;
            }
        };
        self.notify(&applied);
        let agent = self.tenants().get(&job.app).and_then(|t| t.agents.get(&job.agent).cloned());
        let Some(agent) = agent else {
            let error = format!("agent {} of app {} is no longer configured", job.agent, job.app);
            return self.dead_letter(job, error).await;
        };
        let task = applied.task.task.clone();
        // Released before the turn runs, so the store can take its cached task without a copy.
        drop(applied);
        let message =
            task.history.as_ref().and_then(|h| h.iter().rev().find(|m| m.role == crate::protocol::Role::User)).cloned();
        let Some(message) = message else {
            return self.dead_letter(job, "task has no user message".into()).await;
        };
        let cancel = self.inner.shutdown.child_token();
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(task_id.clone(), cancel.clone());
        }
        let outcome = self
            .drive(&job, agent.executor.execute(RequestContext { task, message, cancel: cancel.clone() }), &cancel)
            .await;
        if let Ok(mut running) = self.inner.running.lock() {
            running.remove(&task_id);
        }
        match outcome {
            Ok(()) => {}
            // Shutting down: the job stays queued for the next start (or another instance).
            Err(TurnError::Stopped) if self.inner.shutdown.is_cancelled() => {}
            // Canceled: the cancel removed the job; let the queue forget the lease.
            Err(TurnError::Stopped) => self.inner.backend.queue.discard(&job).await,
            Err(TurnError::Agent(error)) => self.fail_attempt(job, error).await,
            // Another instance runs the job now (this one stalled past the visibility
            // timeout): its output stands, and the job is its to finish.
            Err(TurnError::Superseded(reason)) => {
                tracing::warn!(task_id, reason, "stopping a turn another attempt took over");
                self.inner.backend.queue.release(&job).await;
            }
        }
    }

    /// Applies the executor's events until the turn ends.
    async fn drive(
        &self,
        job: &Job,
        mut events: futures::stream::BoxStream<'static, Result<AgentEvent, crate::agents::AgentError>>,
        cancel: &CancellationToken,
    ) -> Result<(), TurnError> {
        let task_id = &job.task_id;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return Err(TurnError::Stopped),
                event = events.next() => event,
            };
            let change = match event {
                Some(Ok(AgentEvent::Artifact { artifact, append, last_chunk })) => Change::Artifact {
                    task_id: task_id.clone(),
                    artifact,
                    append,
                    last_chunk,
                    turn: Some(Turn::of(job)),
                },
                Some(Ok(AgentEvent::Done { state, message })) => Change::Status {
                    task_id: task_id.clone(),
                    status: TaskStatus::now(state, message),
                    is_final: true,
                    ack_job: Some(job.id.clone()),
                    turn: Some(Turn::of(job)),
                },
                // An executor that ends without saying how completes the task.
                None => Change::Status {
                    task_id: task_id.clone(),
                    status: TaskStatus::now(TaskState::Completed, None),
                    is_final: true,
                    ack_job: Some(job.id.clone()),
                    turn: Some(Turn::of(job)),
                },
                Some(Err(e)) => return Err(TurnError::Agent(e.0)),
            };
            let is_final = matches!(change, Change::Status { .. });
            match self.inner.backend.store.apply(change).await {
                Ok(applied) => self.notify(&applied),
                // Canceled meanwhile: the cancel already acknowledged the job.
                Err(StoreError::TaskTerminal { .. }) | Err(StoreError::TaskNotFound(_)) => {
                    return Err(TurnError::Stopped)
                }
                Err(StoreError::Superseded(reason)) => return Err(TurnError::Superseded(reason)),
                Err(e) => return Err(TurnError::Agent(e.to_string())),
            }
            if is_final {
                return Ok(());
            }
        }
    }

    async fn fail_attempt(&self, job: Job, error: String) {
        if job.attempt >= self.inner.options.max_attempts {
            return self.dead_letter(job, error).await;
        }
        let base = self.inner.options.retry_base.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << (job.attempt - 1).min(16));
        let delay = exp / 2 + rand::random::<u64>() % (exp / 2 + 1);
        tracing::warn!(task_id = job.task_id, attempt = job.attempt, delay_ms = delay, error, "turn failed; retrying");
        if let Err(e) = self.inner.backend.queue.retry(job, error, delay).await {
            tracing::error!(error = %e, "cannot schedule retry");
        }
    }

    async fn dead_letter(&self, job: Job, error: String) {
        tracing::warn!(task_id = job.task_id, attempts = job.attempt, error, "turn dead-lettered");
        match self.inner.backend.queue.dead_letter(job, error).await {
            Ok(applied) => self.notify(&applied),
            Err(e) => tracing::error!(error = %e, "cannot dead-letter job"),
        }
    }
}

enum TurnError {
    /// Canceled or shutting down: the job's fate is decided elsewhere.
    Stopped,
    /// Another attempt took the job over.
    Superseded(String),
    Agent(String),
}

fn new_job(id: String, task_id: &str, app: &str, agent: &str) -> Job {
    Job {
        id,
        task_id: task_id.to_string(),
        app: app.to_string(),
        agent: agent.to_string(),
        attempt: 1,
        artifacts_base: 0,
        base_seq: 0,
        enqueued_ms: now_ms(),
        last_error: None,
    }
}

/// A push config without an id (or with an empty one) is identified by its task id.
pub fn with_default_id(mut config: PushNotificationConfig, task_id: &str) -> PushNotificationConfig {
    if config.id.as_deref().is_none_or(str::is_empty) {
        config.id = Some(task_id.to_string());
    }
    config
}
