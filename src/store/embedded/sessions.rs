//! The session index of the embedded store, in the `sessions` keyspace:
//! the record (`r app id` → [`SessionEntry`] JSON), the app's order (`o app position` → id), the
//! user's order (`u app user position` → id) and the session's tasks (`t app id created task`).

use std::sync::MutexGuard;

use async_trait::async_trait;
use fjall::Keyspace;

use super::{decode, encode, keys, unavailable, EmbeddedHandle, EmbeddedStore};
use crate::store::sessions::{SessionEntry, SessionIndex, SessionTask};
use crate::store::{StoreError, StoredTask, TaskStore};

const POSITION_KEY: &str = "sessions/position";

/// The position of the newest session.
pub(super) fn load_position(meta: &Keyspace) -> Result<u64, StoreError> {
    match meta.get(POSITION_KEY).map_err(unavailable)? {
        Some(bytes) => decode(&bytes),
        None => Ok(0),
    }
}

impl EmbeddedStore {
    /// Adds a created task to its session's index in `batch`, indexing the session first when
    /// this is its first task. The returned guard must be held until the batch is committed:
    /// it keeps creations in position order and stops two first tasks of one context from both
    /// indexing it.
    pub(super) fn index_session(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        task: &StoredTask,
    ) -> Result<MutexGuard<'_, u64>, StoreError> {
        let (app, id) = (task.app.as_str(), task.task.context_id.as_str());
        let mut position = self.session_position.lock().unwrap_or_else(|p| p.into_inner());
        let s = &self.t.sessions;
        if !s.contains_key(keys::session(app, id)).map_err(unavailable)? {
            *position += 1;
            let entry = SessionEntry {
                app: app.to_string(),
                id: id.to_string(),
                user_id: task.user.clone(),
                created_ms: task.created_ms,
                position: *position,
            };
            batch.insert(s, keys::session(app, id), encode(&entry));
            batch.insert(s, keys::at_position(&keys::sessions_of_app(app), *position), id);
            batch.insert(s, keys::at_position(&keys::sessions_of_user(app, &task.user), *position), id);
            batch.insert(&self.t.meta, POSITION_KEY, encode(&*position));
        }
        batch.insert(s, keys::session_task(app, id, task.created_ms, &task.task.id), Vec::<u8>::new());
        Ok(position)
    }

    fn read_session(&self, app: &str, id: &str) -> Result<Option<SessionEntry>, StoreError> {
        match self.t.sessions.get(keys::session(app, id)).map_err(unavailable)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Number of events in a task's log, counting those of a running turn not written yet.
    fn event_count(&self, task_id: &str) -> u64 {
        let live = self.lock(task_id);
        let written = self.t.events.prefix(keys::prefix(task_id)).count() as u64;
        written + live.get(task_id).map_or(0, |l| l.pending.len() as u64)
    }
}

#[async_trait]
impl SessionIndex for EmbeddedHandle {
    async fn sessions(
        &self,
        app: &str,
        user: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let s = &self.0;
        let prefix = match user {
            Some(user) => keys::sessions_of_user(app, user),
            None => keys::sessions_of_app(app),
        };
        let range = keys::at_position(&prefix, after.saturating_add(1))..=keys::at_position(&prefix, u64::MAX);
        let mut out = Vec::new();
        for item in s.t.sessions.range(range).take(limit) {
            let (_, id) = item.into_inner().map_err(unavailable)?;
            if let Some(entry) = s.read_session(app, &String::from_utf8_lossy(&id))? {
                out.push(entry);
            }
        }
        Ok(out)
    }

    async fn session(&self, app: &str, id: &str) -> Result<Option<SessionEntry>, StoreError> {
        self.0.read_session(app, id)
    }

    async fn session_tasks(&self, app: &str, id: &str) -> Result<Vec<SessionTask>, StoreError> {
        let s = &self.0;
        let prefix = keys::tasks_of_session(app, id);
        let indexed =
            s.t.sessions.prefix(&prefix).map(|item| item.key().map(|k| k.to_vec())).collect::<Result<Vec<_>, _>>();
        let mut found = Vec::new();
        let mut gone = Vec::new();
        for key in indexed.map_err(unavailable)? {
            let task_id = keys::session_task_id(&prefix, &key);
            match self.get_task(&task_id).await? {
                Some(task) => found.push(SessionTask { event_count: s.event_count(&task_id), task }),
                None => gone.push(key),
            }
        }
        if !gone.is_empty() {
            let mut batch = s.batch(false);
            for key in gone {
                batch.remove(&s.t.sessions, key);
            }
            batch.commit().map_err(unavailable)?;
        }
        Ok(found)
    }

    async fn forget_session(&self, app: &str, id: &str, only_if_empty: bool) -> Result<bool, StoreError> {
        let (app, id) = (app.to_string(), id.to_string());
        self.0
            .durably(true, move |s| {
                // Under the creation lock: no first task of this context can commit meanwhile.
                let _creations = s.session_position.lock().unwrap_or_else(|p| p.into_inner());
                let Some(entry) = s.read_session(&app, &id)? else { return Ok(false) };
                let tasks = keys::tasks_of_session(&app, &id);
                if only_if_empty && s.t.sessions.prefix(&tasks).next().is_some() {
                    return Ok(false);
                }
                let mut batch = s.batch(true);
                batch.remove(&s.t.sessions, keys::session(&app, &id));
                batch.remove(&s.t.sessions, keys::at_position(&keys::sessions_of_app(&app), entry.position));
                let of_user = keys::sessions_of_user(&app, &entry.user_id);
                batch.remove(&s.t.sessions, keys::at_position(&of_user, entry.position));
                for item in s.t.sessions.prefix(&tasks) {
                    batch.remove(&s.t.sessions, item.key().map_err(unavailable)?);
                }
                batch.commit().map_err(unavailable)?;
                Ok(true)
            })
            .await
    }
}
