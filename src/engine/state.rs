//! The task state machine: how one [`Change`] turns a stored task into the next one and which
//! event it logs. Pure and backend-neutral: every store calls [`transition`] inside its own
//! atomic write, so the rules live in exactly one place.

use crate::clock::now_ms;
use crate::protocol::PushNotificationConfig;
use crate::protocol::{
    Artifact, ArtifactUpdateKind, StatusUpdateKind, StreamEvent, TaskArtifactUpdateEvent, TaskState, TaskStatus,
    TaskStatusUpdateEvent,
};
use crate::store::{Change, Job, StoreError, StoredTask, Turn};

/// Queue and log side effects a backend performs in the same write as the task.
#[derive(Debug, Default)]
pub struct Effects {
    /// Job to insert into the queue (and hand to a worker once written).
    pub enqueue: Option<Job>,
    /// Job to remove from the queue.
    pub ack: Option<String>,
    /// Logged events in `(from, to]` to delete (a retried turn's failed attempt).
    pub drop_events: Option<(u64, u64)>,
    /// The task became terminal: schedule its expiry.
    pub terminal: bool,
    /// Push config to store before the task's configs are read.
    pub push_config: Option<PushNotificationConfig>,
    /// A terminal task became live again (requeued): cancel its expiry.
    pub revived: bool,
    /// Dead letter to remove (its task was requeued).
    pub undead: Option<String>,
}

/// Applies `change` to `current` in place (None when the task does not exist yet) and returns
/// the event to log. On error `current` is left exactly as it was: every check comes before
/// the first mutation.
pub fn transition(current: &mut Option<StoredTask>, change: Change) -> Result<(StreamEvent, Effects), StoreError> {
    let now = now_ms();
    let mut effects = Effects::default();
    let event = match change {
        Change::Create { task, agent, user, job, push_config, callback, .. } => {
            if current.is_some() {
                return Err(StoreError::TaskExists(task.id));
            }
            let mut job = job;
            job.base_seq = 1;
            let event = StreamEvent::Task(task.clone());
            *current = Some(StoredTask {
                task,
                app: job.app.clone(),
                user,
                agent,
                seq: 1,
                job_id: Some(job.id.clone()),
                has_push: push_config.is_some(),
                created_ms: now,
                updated_ms: now,
                turn_started_ms: 0,
                attempt: 0,
                callback: callback.map(|c| *c),
            });
            effects.enqueue = Some(job);
            effects.push_config = push_config;
            return Ok((event, effects));
        }
        Change::Continue { task_id, message, mut job, push_config } => {
            let stored = live(current, &task_id)?;
            if !stored.task.status.state.is_interrupted() {
                return Err(StoreError::Conflict(format!(
                    "Task {task_id} is {} and cannot accept a new message until it asks for input",
                    stored.task.status.state.as_str()
                )));
            }
            stored.has_push |= push_config.is_some();
            effects.push_config = push_config;
            stored.task.history.get_or_insert_with(Vec::new).push(message);
            stored.task.status = TaskStatus::now(TaskState::Submitted, None);
            job.artifacts_base = stored.task.artifacts.as_ref().map_or(0, Vec::len);
            job.base_seq = stored.seq + 1;
            stored.job_id = Some(job.id.clone());
            effects.enqueue = Some(job);
            StreamEvent::Task(stored.task.clone())
        }
        Change::StartTurn { job } => {
            let stored = live(current, &job.task_id)?;
            if stored.job_id.as_deref() != Some(job.id.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "job {} is no longer current for task {}",
                    job.id, job.task_id
                )));
            }
            if job.attempt > 1 {
                if let Some(artifacts) = stored.task.artifacts.as_mut() {
                    artifacts.truncate(job.artifacts_base);
                }
                if stored.seq > job.base_seq {
                    effects.drop_events = Some((job.base_seq, stored.seq));
                }
            }
            stored.turn_started_ms = now;
            stored.attempt = job.attempt;
            status_change(stored, TaskStatus::now(TaskState::Working, None), false)
        }
        Change::Status { task_id, status, is_final, ack_job, turn } => {
            let stored = live(current, &task_id)?;
            check_turn(stored, turn.as_ref())?;
            if let Some(job) = ack_job {
                if stored.job_id.as_deref() == Some(job.as_str()) {
                    stored.job_id = None;
                }
                effects.ack = Some(job);
            }
            if let Some(message) = &status.message {
                stored.task.history.get_or_insert_with(Vec::new).push(message.clone());
            }
            status_change(stored, status, is_final)
        }
        Change::Artifact { task_id, artifact, append, last_chunk, turn } => {
            let stored = live(current, &task_id)?;
            check_turn(stored, turn.as_ref())?;
            merge_artifact(stored.task.artifacts.get_or_insert_with(Vec::new), &artifact, append);
            StreamEvent::Artifact(TaskArtifactUpdateEvent {
                kind: ArtifactUpdateKind,
                task_id: stored.task.id.clone(),
                context_id: stored.task.context_id.clone(),
                artifact,
                append: Some(append),
                last_chunk: Some(last_chunk),
                metadata: None,
            })
        }
        Change::Requeue { task_id, mut job, dead_letter } => {
            let stored = current.as_mut().ok_or_else(|| StoreError::TaskNotFound(task_id.clone()))?;
            let state = stored.task.status.state;
            if state != TaskState::Failed {
                return Err(StoreError::Conflict(format!(
                    "Task {task_id} is {} and only a failed task can be requeued",
                    state.as_str()
                )));
            }
            // The new run starts from the output the failed turn started from.
            if let Some(artifacts) = stored.task.artifacts.as_mut() {
                artifacts.truncate(job.artifacts_base);
            }
            stored.task.status = TaskStatus::now(TaskState::Submitted, None);
            job.base_seq = stored.seq + 1;
            stored.job_id = Some(job.id.clone());
            effects.enqueue = Some(job);
            effects.revived = true;
            effects.undead = Some(dead_letter);
            StreamEvent::Task(stored.task.clone())
        }
        Change::Cancel { task_id } => {
            let stored = live(current, &task_id)?;
            effects.ack = stored.job_id.take();
            status_change(stored, TaskStatus::now(TaskState::Canceled, None), true)
        }
    };
    if let Some(stored) = current.as_mut() {
        stored.seq += 1;
        stored.updated_ms = now;
        effects.terminal = stored.task.status.state.is_terminal();
    }
    Ok((event, effects))
}

/// A worker's change must come from the task's current turn: the same job and attempt.
fn check_turn(stored: &StoredTask, turn: Option<&Turn>) -> Result<(), StoreError> {
    match turn {
        Some(turn) if stored.job_id.as_deref() != Some(turn.job_id.as_str()) || stored.attempt != turn.attempt => {
            Err(StoreError::Superseded(format!(
                "attempt {} of job {} for task {} was taken over by another attempt",
                turn.attempt, turn.job_id, stored.task.id
            )))
        }
        _ => Ok(()),
    }
}

/// The task must exist and be live.
fn live<'a>(current: &'a mut Option<StoredTask>, task_id: &str) -> Result<&'a mut StoredTask, StoreError> {
    let stored = current.as_mut().ok_or_else(|| StoreError::TaskNotFound(task_id.to_string()))?;
    let state = stored.task.status.state;
    if state.is_terminal() {
        return Err(StoreError::TaskTerminal { id: task_id.to_string(), state: state.as_str() });
    }
    Ok(stored)
}

fn status_change(stored: &mut StoredTask, status: TaskStatus, is_final: bool) -> StreamEvent {
    stored.task.status = status.clone();
    StreamEvent::Status(TaskStatusUpdateEvent {
        kind: StatusUpdateKind,
        task_id: stored.task.id.clone(),
        context_id: stored.task.context_id.clone(),
        status,
        is_final,
        metadata: None,
    })
}

/// Adds a chunk to the task's artifacts: `append` extends the artifact with the same id,
/// otherwise the chunk replaces it (or is added when new).
fn merge_artifact(artifacts: &mut Vec<Artifact>, chunk: &Artifact, append: bool) {
    match artifacts.iter_mut().find(|a| a.artifact_id == chunk.artifact_id) {
        Some(existing) if append => existing.parts.extend(chunk.parts.iter().cloned()),
        Some(existing) => *existing = chunk.clone(),
        None => artifacts.push(chunk.clone()),
    }
}
