//! Sessions (an app's A2A contexts) as the admin API shows them: the index entry with the
//! activity of its tasks, a session's events, and deleting a session with its tasks.

use super::{Engine, EngineError};
use crate::protocol::StreamEvent;
use crate::store::sessions::{SessionEntry, SessionTask};

/// A session with the activity of its tasks.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub entry: SessionEntry,
    /// Newest change of any of its tasks.
    pub last_update_ms: u64,
    /// Events logged by its tasks.
    pub event_count: u64,
    /// Its tasks, oldest first.
    pub task_ids: Vec<String>,
}

impl SessionSummary {
    fn new(entry: SessionEntry, tasks: &[SessionTask]) -> SessionSummary {
        SessionSummary {
            last_update_ms: tasks.iter().map(|t| t.task.updated_ms).max().unwrap_or(entry.created_ms),
            event_count: tasks.iter().map(|t| t.event_count).sum(),
            task_ids: tasks.iter().map(|t| t.task.task.id.clone()).collect(),
            entry,
        }
    }
}

/// One page of sessions.
#[derive(Debug, Clone)]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    /// The position to continue after, when there may be more.
    pub next_after: Option<u64>,
}

impl Engine {
    /// Sessions of `app` (begun by `user`, when given) after position `after`, in the order they
    /// began; at most `page_size`. Sessions whose tasks have all expired are forgotten on the way.
    pub async fn sessions(
        &self,
        app: &str,
        user: Option<&str>,
        mut after: u64,
        page_size: usize,
    ) -> Result<SessionPage, EngineError> {
        let index = &self.inner.backend.sessions;
        let mut sessions = Vec::new();
        loop {
            let wanted = page_size - sessions.len();
            // One more than needed tells whether another page follows.
            let entries = index.sessions(app, user, after, wanted + 1).await?;
            let exhausted = entries.len() <= wanted;
            for entry in entries {
                if sessions.len() == page_size {
                    return Ok(SessionPage { sessions, next_after: Some(after) });
                }
                after = entry.position;
                let tasks = index.session_tasks(app, &entry.id).await?;
                if tasks.is_empty() {
                    index.forget_session(&entry, true).await?;
                    continue;
                }
                sessions.push(SessionSummary::new(entry, &tasks));
            }
            if exhausted {
                return Ok(SessionPage { sessions, next_after: None });
            }
        }
    }

    /// A session of `app` with the newest `limit` events of its tasks (oldest first: task by
    /// task in the order they were created, each task's events in log order).
    pub async fn session(
        &self,
        app: &str,
        id: &str,
        limit: usize,
    ) -> Result<Option<(SessionSummary, Vec<StreamEvent>)>, EngineError> {
        let index = &self.inner.backend.sessions;
        let Some(entry) = index.session(app, id).await? else { return Ok(None) };
        let tasks = index.session_tasks(app, id).await?;
        if tasks.is_empty() {
            index.forget_session(&entry, true).await?;
            return Ok(None);
        }
        let mut events = Vec::new();
        for task in &tasks {
            events.extend(self.events_after(&task.task.task.id, 0).await?.into_iter().map(|e| e.event));
        }
        events.drain(..events.len().saturating_sub(limit));
        Ok(Some((SessionSummary::new(entry, &tasks), events)))
    }

    /// Deletes a session of `app` with its tasks (live ones are canceled first); false when
    /// there is no such session.
    pub async fn delete_session(&self, app: &str, id: &str) -> Result<bool, EngineError> {
        let index = &self.inner.backend.sessions;
        let Some(entry) = index.session(app, id).await? else { return Ok(false) };
        for task in index.session_tasks(app, id).await? {
            self.remove_task(&task.task.task.id).await?;
        }
        index.forget_session(&entry, false).await?;
        Ok(true)
    }

    /// Forgets every session of `app` (a deleted app, whose tasks are removed separately).
    pub(super) async fn forget_sessions_of_app(&self, app: &str) -> Result<(), EngineError> {
        let index = &self.inner.backend.sessions;
        loop {
            let entries = index.sessions(app, None, 0, 100).await?;
            if entries.is_empty() {
                return Ok(());
            }
            for entry in entries {
                index.forget_session(&entry, false).await?;
            }
        }
    }
}
