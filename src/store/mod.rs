//! Backend-neutral storage: tasks and their event logs, push configs, the job queue and the event
//! bus. The engine talks only to these traits; `embedded` (fjall, the zero-setup default) and
//! `redis` (several instances sharing one Redis) implement them, and one contract suite
//! (`tests/store_contract.rs`) runs against each.
//!
//! The central operation is [`TaskStore::apply`]: one [`Change`] to one task, applied atomically
//! with its event-log append and its queue side effects, then published on the bus only after it
//! is visible to readers. Publishing after the write is what lets a subscriber take a snapshot
//! and follow live events without gaps: subscribe first, read, then skip events the snapshot has.

pub mod bus;
pub mod capture;
pub mod deliveries;
pub mod embedded;
pub mod limits;
pub mod redis;
pub mod sessions;
pub mod tenants;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::protocol::json::{self, WriteJson};
use crate::protocol::{Artifact, Message, PushNotificationConfig, StreamEvent, Task, TaskStatus};

/// What went wrong in a backend, in terms the engine can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("Task {0} not found")]
    TaskNotFound(String),
    /// The change needs a live task but the task is terminal.
    #[error("Task {id} is in terminal state {state}")]
    TaskTerminal { id: String, state: &'static str },
    /// The change is not allowed in the task's current state.
    #[error("{0}")]
    Conflict(String),
    #[error("Task {0} already exists")]
    TaskExists(String),
    /// A worker's change for an attempt that another attempt has taken over (its instance
    /// stalled past the visibility timeout): refused, so the two never mix their output.
    #[error("{0}")]
    Superseded(String),
    /// The backend is unusable (I/O error, connection lost).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A task as stored: the wire task plus what the engine needs to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTask {
    pub task: Task,
    /// App (tenant) the task belongs to.
    #[serde(default = "tenants::default_app")]
    pub app: String,
    /// User whose message created the task (a token's subject).
    #[serde(default = "sessions::default_user")]
    pub user: String,
    /// Agent that runs the task.
    pub agent: String,
    /// Sequence number of the last event in the task's log.
    pub seq: u64,
    /// Job currently queued or running for this task, if any.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Push configs were set for this task (saves looking them up on every status change).
    #[serde(default)]
    pub has_push: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When the current (or last) turn started running, for processing-time statistics.
    #[serde(default)]
    pub turn_started_ms: u64,
    /// The attempt of the current (or last) turn: a worker's changes must name it.
    #[serde(default)]
    pub attempt: u32,
    /// Where the task is POSTed each time a turn ends (a webhook trigger's callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackTarget>,
}

impl StoredTask {
    /// The record's JSON, built around the task's own JSON, which is returned too: a blocking
    /// `message/send` answers with the task exactly as it was stored, not encoded a second time.
    /// The bytes are those `serde_json` writes for the record itself (a test compares them), in
    /// fewer instructions (see [`crate::protocol::json`]).
    pub fn encode_record(&self) -> (Vec<u8>, Arc<RawValue>) {
        // SAFETY: `WriteJson` writes one well-formed JSON value without surrounding whitespace
        // (its tests compare it with serde_json's output), so it needs no second parse. It
        // writes only whole `str`s and ASCII, so the UTF-8 check cannot fail; if it ever did,
        // serde_json encodes the task instead.
        let task = match String::from_utf8(self.task.to_json()) {
            Ok(json) => unsafe { RawValue::from_string_unchecked(json) },
            Err(_) => serde_json::value::to_raw_value(&self.task).unwrap_or_default(),
        };
        let number = |out: &mut Vec<u8>, key: &[u8], n: u64| {
            out.extend_from_slice(key);
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        };
        let mut record = Vec::with_capacity(task.get().len() + 256);
        record.extend_from_slice(b"{\"task\":");
        record.extend_from_slice(task.get().as_bytes());
        json::write_field(&mut record, b",\"app\":", &self.app);
        json::write_field(&mut record, b",\"user\":", &self.user);
        json::write_field(&mut record, b",\"agent\":", &self.agent);
        number(&mut record, b",\"seq\":", self.seq);
        record.extend_from_slice(b",\"job_id\":");
        match &self.job_id {
            Some(job_id) => json::write_str(&mut record, job_id),
            None => record.extend_from_slice(b"null"),
        }
        record.extend_from_slice(if self.has_push { b",\"has_push\":true" } else { b",\"has_push\":false" });
        number(&mut record, b",\"created_ms\":", self.created_ms);
        number(&mut record, b",\"updated_ms\":", self.updated_ms);
        number(&mut record, b",\"turn_started_ms\":", self.turn_started_ms);
        number(&mut record, b",\"attempt\":", u64::from(self.attempt));
        if let Some(callback) = &self.callback {
            record.extend_from_slice(b",\"callback\":");
            let _ = serde_json::to_writer(&mut record, callback);
        }
        record.push(b'}');
        (record, Arc::from(task))
    }
}

/// A callback: the URL a finished turn's task is POSTed to, signed with the secret if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTarget {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
}

/// One turn of a task to run: queued durably, leased by a worker, acknowledged when the turn ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub task_id: String,
    /// App (tenant) of the task.
    #[serde(default = "tenants::default_app")]
    pub app: String,
    pub agent: String,
    /// 1 for the first run; incremented on every retry or recovery.
    pub attempt: u32,
    /// Number of artifacts before this turn: a retry drops what a failed attempt produced.
    pub artifacts_base: usize,
    /// Event sequence at which this turn started: a retry drops the failed attempt's events.
    pub base_seq: u64,
    pub enqueued_ms: u64,
    /// Error of the previous attempt, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The turn a worker's change belongs to: its job and attempt. A change whose turn is no longer
/// the task's current one is refused with [`StoreError::Superseded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub job_id: String,
    pub attempt: u32,
}

impl Turn {
    pub fn of(job: &Job) -> Turn {
        Turn { job_id: job.id.clone(), attempt: job.attempt }
    }
}

/// A logged event with its position in the task's log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: u64,
    pub event: StreamEvent,
    /// On the bus, a final event carries the task as it ended the turn, so a waiting
    /// `message/send` answers without reading it back.
    pub snapshot: Option<Snapshot>,
}

impl LoggedEvent {
    /// The event as the bus carries it: a final one with the task it ended the turn with (and
    /// that task's JSON, when the writer kept it).
    pub fn on_bus(
        seq: u64,
        event: StreamEvent,
        task: &Arc<StoredTask>,
        json: Option<Arc<RawValue>>,
        unflushed: u64,
    ) -> LoggedEvent {
        let snapshot = event.is_final().then(|| Snapshot { task: task.clone(), json, unflushed });
        LoggedEvent { seq, event, snapshot }
    }

    /// The write its answerer must flush first (see [`Snapshot::unflushed`]); 0 for none.
    pub fn unflushed(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.unflushed)
    }
}

/// The task a final event carries on the bus.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub task: Arc<StoredTask>,
    /// The task's JSON as its record holds it, when the writer kept it.
    pub json: Option<Arc<RawValue>>,
    /// Non-zero when the write is not yet as durable as an answer needs: the backend left it
    /// buffered for the one who answers with it (the creator of a task kept back until its
    /// turn's end), who passes this to [`TaskStore::flushed`] first, so answers that come
    /// close together share one flush.
    pub unflushed: u64,
}

/// A change to one task. Each produces exactly one logged event.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new task with its first user message; queues `job`. A push config sent with the
    /// message is stored in the same write, so it sees the very first status. The first task
    /// of a context also indexes its session (see [`sessions`]); `new_context` says the
    /// context id was generated for this task, so no session has it yet.
    ///
    /// `answered_at_turn_end`: the creator is answered only when the turn ends (a blocking
    /// `message/send`) and no one else can learn of the task before then (no push config, no
    /// callback). A backend may then keep the creation to itself and write it with the turn's
    /// end, one write instead of two; a crash meanwhile loses a task no one was told about,
    /// and its caller sees the request fail. A shutdown writes such tasks as queued.
    Create {
        task: Task,
        agent: String,
        user: String,
        job: Job,
        push_config: Option<PushNotificationConfig>,
        new_context: bool,
        callback: Option<Box<CallbackTarget>>,
        answered_at_turn_end: bool,
    },
    /// A user message that continues an interrupted task; queues `job`.
    Continue { task_id: String, message: Message, job: Job, push_config: Option<PushNotificationConfig> },
    /// A worker starts (or retries) the job's turn: state `working`. On a retry the artifacts
    /// and events of the failed attempt are dropped so clients never see chunks twice.
    StartTurn { job: Job },
    /// A status change; `ack_job` removes the finished job from the queue in the same write;
    /// `turn` is set when a worker reports it.
    Status { task_id: String, status: TaskStatus, is_final: bool, ack_job: Option<String>, turn: Option<Turn> },
    /// An artifact chunk of a worker's turn.
    Artifact { task_id: String, artifact: Artifact, append: bool, last_chunk: bool, turn: Option<Turn> },
    /// Cancel a live task: state `canceled`, its job (if any) leaves the queue.
    Cancel { task_id: String },
    /// An admin gives a dead-lettered task another run: the failed task goes back to
    /// `submitted` with a fresh `job`, and the dead letter `dead_letter` is removed.
    Requeue { task_id: String, job: Job, dead_letter: String },
}

impl Change {
    /// A creation the backend may write with the turn's end (see [`Change::Create`]).
    pub fn defers_creation(&self) -> bool {
        matches!(self, Change::Create { answered_at_turn_end: true, push_config: None, callback: None, .. })
    }

    /// The task this change applies to.
    pub fn task_id(&self) -> &str {
        match self {
            Change::Create { task, .. } => &task.id,
            Change::Continue { task_id, .. }
            | Change::Status { task_id, .. }
            | Change::Artifact { task_id, .. }
            | Change::Cancel { task_id }
            | Change::Requeue { task_id, .. } => task_id,
            Change::StartTurn { job } => &job.task_id,
        }
    }

    /// Changes that a client is told about synchronously must survive a crash before we answer;
    /// intermediate progress (working, chunks) is re-produced by a retry if lost.
    pub fn needs_sync(&self) -> bool {
        match self {
            Change::Create { .. } => !self.defers_creation(),
            Change::Continue { .. } | Change::Cancel { .. } | Change::Requeue { .. } => true,
            Change::Status { is_final, status, .. } => *is_final || status.state.is_terminal(),
            Change::StartTurn { .. } | Change::Artifact { .. } => false,
        }
    }
}

/// The outcome of an applied change.
#[derive(Debug, Clone)]
pub struct Applied {
    pub seq: u64,
    /// The change's event, shared with the bus's subscribers (not a copy of what they get).
    pub logged: Arc<LoggedEvent>,
    /// The task after the change.
    pub task: Arc<StoredTask>,
    /// Push configs of the task (read in the same transaction), for status notifications.
    pub push_configs: Vec<PushNotificationConfig>,
    /// The turn this change queued was taken by a worker of this instance (always so on a
    /// single-process backend), so its events reach followers here without a remote
    /// subscription.
    pub turn_here: bool,
}

impl Applied {
    /// The change's event.
    pub fn event(&self) -> &StreamEvent {
        &self.logged.event
    }
}

/// Durable task state and per-task event logs.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Applies one change atomically, appends its event, then publishes it on the bus.
    async fn apply(&self, change: Change) -> Result<Applied, StoreError>;
    /// The stored task.
    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError>;
    /// Logged events with a sequence number greater than `after`, oldest first.
    async fn events_after(&self, task_id: &str, after: u64) -> Result<Vec<LoggedEvent>, StoreError>;
    /// Stores a push config (replacing one with the same id); the task must exist.
    async fn set_push_config(&self, task_id: &str, config: PushNotificationConfig) -> Result<(), StoreError>;
    /// All push configs of a task; the task must exist.
    async fn push_configs(&self, task_id: &str) -> Result<Vec<PushNotificationConfig>, StoreError>;
    /// Deletes one push config; false when there was none with that id.
    async fn delete_push_config(&self, task_id: &str, config_id: &str) -> Result<bool, StoreError>;
    /// Deletes terminal tasks whose retention ended before `now_ms`; returns how many.
    async fn sweep_expired(&self, now_ms: u64) -> Result<usize, StoreError>;
    /// Ids of every task of an app. A full scan of the tasks: for rare admin operations only.
    async fn task_ids_of_app(&self, app: &str) -> Result<Vec<String>, StoreError>;
    /// Removes a task that has no job left (terminal), with its log and push configs; false
    /// when there was no such task.
    async fn remove_task(&self, task_id: &str) -> Result<bool, StoreError>;
    /// Makes a write left buffered for its answerer (a snapshot's [`Snapshot::unflushed`];
    /// `u64::MAX` for every such write) as durable as the backend promises for acknowledged
    /// changes.
    async fn flushed(&self, _unflushed: u64) -> Result<(), StoreError> {
        Ok(())
    }
    /// Checks that the backend answers.
    async fn health(&self) -> Result<(), StoreError>;
    /// Short name for `/health` (`embedded`, `memory`, `redis`).
    fn kind(&self) -> &'static str;
}

/// Counts for `/admin/queue/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    /// Jobs waiting for a worker (including retries waiting for their delay).
    pub pending: u64,
    /// Jobs a worker holds.
    pub running: u64,
    /// Tasks that ended `completed` / `failed` / `canceled` (kept across restarts).
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    pub dead_letter: u64,
    /// Age of the job waiting longest (0 when none waits).
    pub oldest_pending_age_ms: u64,
    /// Mean time from a turn's start to its end, over all finished turns.
    pub avg_processing_ms: u64,
}

impl QueueStats {
    /// Stats from a backend's counts: `jobs` queued or running, `running` held by workers,
    /// `oldest_ms` when the longest-waiting job was queued.
    pub fn from_counts(jobs: u64, running: u64, dead_letter: u64, oldest_ms: Option<u64>, outcomes: &Outcomes) -> Self {
        QueueStats {
            pending: jobs.saturating_sub(running),
            running,
            completed: outcomes.completed,
            failed: outcomes.failed,
            canceled: outcomes.canceled,
            dead_letter,
            oldest_pending_age_ms: oldest_ms.map_or(0, |ms| crate::clock::now_ms().saturating_sub(ms)),
            avg_processing_ms: outcomes.avg_processing_ms(),
        }
    }
}

/// Outcome counters of finished turns, kept by each backend.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Outcomes {
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    /// Finished turns and their total processing time.
    pub processed: u64,
    pub processing_ms: u64,
}

impl Outcomes {
    /// Counts a change that ended a task (`terminal`) or a turn (`processing_ms`).
    pub fn count(&mut self, state: crate::protocol::TaskState, terminal: bool, processing_ms: Option<u64>) {
        use crate::protocol::TaskState::*;
        match state {
            Completed if terminal => self.completed += 1,
            Failed if terminal => self.failed += 1,
            Canceled if terminal => self.canceled += 1,
            _ => {}
        }
        if let Some(ms) = processing_ms {
            self.processed += 1;
            self.processing_ms += ms;
        }
    }

    pub fn add(&mut self, other: &Outcomes) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.canceled += other.canceled;
        self.processed += other.processed;
        self.processing_ms += other.processing_ms;
    }

    pub fn avg_processing_ms(&self) -> u64 {
        self.processing_ms.checked_div(self.processed).unwrap_or(0)
    }
}

/// A dead-lettered job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job: Job,
    pub error: String,
    pub failed_ms: u64,
}

/// The change that gives a dead-lettered task another run, with a fresh set of attempts.
pub fn requeue_change(letter: &DeadLetter) -> Change {
    Change::Requeue {
        task_id: letter.job.task_id.clone(),
        job: Job {
            id: uuid::Uuid::now_v7().to_string(),
            task_id: letter.job.task_id.clone(),
            app: letter.job.app.clone(),
            agent: letter.job.agent.clone(),
            attempt: 1,
            artifacts_base: letter.job.artifacts_base,
            base_seq: 0,
            enqueued_ms: crate::clock::now_ms(),
            last_error: None,
        },
        dead_letter: letter.job.id.clone(),
    }
}

/// The change that fails a task whose job exhausted its attempts.
pub fn dead_letter_change(job: &Job, error: &str) -> Change {
    let reason = Message {
        kind: crate::protocol::MessageKind,
        message_id: uuid::Uuid::new_v4().to_string(),
        role: crate::protocol::Role::Agent,
        parts: vec![crate::protocol::Part::text(format!("Task failed after {} attempts: {error}", job.attempt))],
        task_id: Some(job.task_id.clone()),
        context_id: None,
        reference_task_ids: None,
        extensions: None,
        metadata: None,
    };
    Change::Status {
        task_id: job.task_id.clone(),
        status: TaskStatus::now(crate::protocol::TaskState::Failed, Some(reason)),
        is_final: true,
        ack_job: Some(job.id.clone()),
        turn: None,
    }
}

/// At-least-once job queue. Jobs enter through [`Change::Create`] / [`Change::Continue`] (so a
/// task and its job are written together) and leave through an acknowledging change.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Waits for the next job to run; `None` once the queue is shut down.
    async fn next(&self) -> Option<Job>;
    /// Schedules another attempt after `delay_ms`, recording the error.
    async fn retry(&self, job: Job, error: String, delay_ms: u64) -> Result<(), StoreError>;
    /// Drops a job that has nothing left to run (its task was canceled or superseded).
    async fn discard(&self, job: &Job);
    /// Forgets this instance's hold on a job that another attempt took over, leaving the job
    /// itself to that attempt.
    async fn release(&self, job: &Job);
    /// Moves a job that exhausted its attempts to the dead-letter queue and fails its task.
    async fn dead_letter(&self, job: Job, error: String) -> Result<Applied, StoreError>;
    /// Re-queues jobs that were queued or running when the process stopped; called once at start.
    /// Jobs past `max_attempts` are dead-lettered instead. Returns (requeued, dead-lettered).
    async fn recover(&self, max_attempts: u32) -> Result<(usize, usize), StoreError>;
    /// Hands the jobs this instance's workers still hold back to the queue, so another
    /// instance runs them now rather than after the visibility timeout (graceful shutdown, after
    /// the workers stopped). The embedded queue keeps them for its next start.
    async fn hand_back(&self) {}
    /// Queue counts.
    async fn stats(&self) -> Result<QueueStats, StoreError>;
    /// The newest dead letters (at most `limit`) and how many there are in all.
    async fn dead_letters(&self, limit: usize) -> Result<(Vec<DeadLetter>, u64), StoreError>;
    /// Gives a dead-lettered job's task another run; false when there is no such dead letter.
    async fn requeue_dead_letter(&self, id: &str) -> Result<bool, StoreError>;
    /// Stops handing out jobs (graceful shutdown).
    fn close(&self);
}

/// Live fan-out of applied events to subscribers, on every instance of a deployment.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Follows the events of one task from now on: once this returns, every event applied
    /// afterwards (on any instance) reaches the receiver, or the receiver lags or closes and the
    /// follower reads the log.
    async fn subscribe(&self, task_id: &str) -> Result<broadcast::Receiver<Arc<LoggedEvent>>, StoreError> {
        let receiver = self.subscribe_here(task_id);
        self.extend_to_remote(task_id).await?;
        Ok(receiver)
    }
    /// Follows the events of one task written by this instance only.
    fn subscribe_here(&self, task_id: &str) -> broadcast::Receiver<Arc<LoggedEvent>>;
    /// Like [`EventBus::subscribe_here`], for a follower that wants only the event ending the
    /// turn: it gets that event alone, and is not woken for the others.
    fn subscribe_to_turn_end_here(&self, task_id: &str) -> TurnEndSubscription;
    /// Extends this instance's subscriptions to a task to events written by other instances
    /// (a no-op on a single-process backend).
    async fn extend_to_remote(&self, task_id: &str) -> Result<(), StoreError>;
    /// Number of open subscriptions (for metrics).
    fn subscriptions(&self) -> usize;
    /// Ids of tasks canceled on any instance, so the instance running the turn stops it.
    fn cancellations(&self) -> broadcast::Receiver<String>;
}

/// A subscription to a task's events whose holder waits for the event that ends the turn on
/// `turn_end`, and reads `events` (which counts as a subscription all along) only when that
/// wait is in doubt: it fails when the feed is interrupted, and is never sent when the event
/// was published elsewhere and read from the log.
pub struct TurnEndSubscription {
    pub events: broadcast::Receiver<Arc<LoggedEvent>>,
    pub turn_end: tokio::sync::oneshot::Receiver<Arc<LoggedEvent>>,
}

/// The app of an encoded [`StoredTask`], read without decoding the rest of it.
pub fn app_of_record(record: &[u8]) -> Result<String, StoreError> {
    #[derive(Deserialize)]
    struct Owner {
        #[serde(default = "tenants::default_app")]
        app: String,
    }
    serde_json::from_slice::<Owner>(record)
        .map(|owner| owner.app)
        .map_err(|e| StoreError::Unavailable(format!("corrupt record: {e}")))
}

/// A backend: the three facets, chosen once from configuration.
#[derive(Clone)]
pub struct Backend {
    pub store: Arc<dyn TaskStore>,
    pub queue: Arc<dyn TaskQueue>,
    pub bus: Arc<dyn EventBus>,
    pub tenants: Arc<dyn tenants::TenantStore>,
    pub sessions: Arc<dyn sessions::SessionIndex>,
    pub limits: Arc<dyn limits::RateCounter>,
    pub capture: Arc<dyn capture::CaptureStore>,
    pub deliveries: Arc<dyn deliveries::DeliveryStore>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Part, TaskKind, TaskState};

    /// Every field set, so a field `encode_record` lacks or spells differently shows.
    fn stored(callback: Option<CallbackTarget>, job_id: Option<String>) -> StoredTask {
        let message = |id: &str| Message {
            kind: crate::protocol::MessageKind,
            message_id: id.into(),
            role: crate::protocol::Role::User,
            parts: vec![Part::text("hello \"quoted\" \u{e9}")],
            task_id: Some("t1".into()),
            context_id: Some("c1".into()),
            reference_task_ids: Some(vec!["t0".into()]),
            extensions: None,
            metadata: Some(serde_json::Map::from_iter([("k".to_string(), serde_json::json!([1, null]))])),
        };
        StoredTask {
            task: Task {
                kind: TaskKind,
                id: "t1".into(),
                context_id: "c1".into(),
                status: TaskStatus::now(TaskState::Completed, Some(message("m2"))),
                history: Some(vec![message("m1")]),
                artifacts: Some(vec![Artifact {
                    artifact_id: "a1".into(),
                    parts: vec![Part::text("hello")],
                    name: Some("echo".into()),
                    description: None,
                    extensions: None,
                    metadata: None,
                }]),
                metadata: None,
            },
            app: "default".into(),
            user: "u1".into(),
            agent: "echo".into(),
            seq: 4,
            job_id,
            has_push: true,
            created_ms: 1,
            updated_ms: 2,
            turn_started_ms: 3,
            attempt: 1,
            callback,
        }
    }

    #[test]
    fn a_record_built_around_its_task_json_is_the_record_serde_writes() {
        let callback = CallbackTarget { url: "https://example.com/cb".into(), secret: Some("s".into()) };
        for (callback, job_id) in [(None, Some("j1".into())), (Some(callback), None)] {
            let stored = stored(callback, job_id);
            let (record, task) = stored.encode_record();
            assert_eq!(String::from_utf8(record).unwrap(), serde_json::to_string(&stored).unwrap());
            assert_eq!(task.get(), serde_json::to_string(&stored.task).unwrap());
            // And what a reply that cuts no history writes.
            assert_eq!(task.get(), serde_json::to_string(&stored.task.with_history_length(None)).unwrap());
        }
    }
}
