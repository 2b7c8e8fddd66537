//! The session index of the embedded store, in the `sessions` keyspace, in two kinds of entry:
//! the app's order (`o app position` → the session's id, user and creation time) and the
//! session's tasks (`t app id number task` → the session's position; one counter numbers
//! sessions and tasks, so both list in creation order). A new session costs two inserts
//! and a further task one (each insert counts on the hot path: four per session cost a fifth
//! of the message/send throughput). Looking a session up by id reads its first task entry for
//! the position, then the order entry; filtering by user scans the app's order.

use std::collections::{BTreeSet, HashMap};
use std::sync::MutexGuard;

use async_trait::async_trait;
use fjall::Keyspace;
use serde::{Deserialize, Serialize};

use super::{decode, encode, keys, unavailable, EmbeddedHandle, EmbeddedStore};
use crate::store::sessions::{SessionEntry, SessionIndex, SessionTask};
use crate::store::{StoreError, StoredTask, TaskStore};

/// Positions are reserved in blocks, so the meta record is written once per block rather than
/// once per session; a restart continues after the reserved block (positions may skip, never
/// repeat or go back).
const POSITION_KEY: &str = "sessions/reserved";
const POSITION_BLOCK: u64 = 1024;

/// The position after which a new process numbers sessions.
pub(super) fn load_position(meta: &Keyspace) -> Result<u64, StoreError> {
    match meta.get(POSITION_KEY).map_err(unavailable)? {
        Some(bytes) => decode(&bytes),
        None => Ok(0),
    }
}

/// A session's order entry: what its key does not say, in short field names.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(rename = "i")]
    id: String,
    #[serde(rename = "u")]
    user_id: String,
    #[serde(rename = "c")]
    created_ms: u64,
}

impl Record {
    fn entry(self, app: &str, position: u64) -> SessionEntry {
        SessionEntry { app: app.to_string(), id: self.id, user_id: self.user_id, created_ms: self.created_ms, position }
    }
}

/// Sessions being indexed by creations that have not committed yet.
pub(super) struct SessionCreations {
    /// Position of the newest session, and the end of the reserved block.
    last: u64,
    reserved: u64,
    /// Positions of sessions whose first task has not committed yet.
    pending: BTreeSet<u64>,
    /// Client-named contexts with a creation in flight: how many, and their session's
    /// position. Another first task of the same context joins that session.
    named: HashMap<(String, String), (u32, u64)>,
}

impl SessionCreations {
    pub(super) fn new(reserved: u64) -> SessionCreations {
        SessionCreations { last: reserved, reserved, pending: BTreeSet::new(), named: HashMap::new() }
    }

    /// The newest position below which every session is committed: listings stop there, so
    /// a session that commits late never lands behind a page already read.
    fn settled(&self) -> u64 {
        self.pending.first().map_or(self.last, |p| p - 1)
    }
}

/// A creation's hold on its session until its batch is committed (or abandoned).
pub(super) struct SessionClaim<'a> {
    store: &'a EmbeddedStore,
    position: Option<u64>,
    named: Option<(String, String)>,
}

impl Drop for SessionClaim<'_> {
    fn drop(&mut self) {
        let mut creations = self.store.session_creations();
        if let Some(position) = self.position {
            creations.pending.remove(&position);
        }
        if let Some(key) = self.named.take() {
            if let Some((count, _)) = creations.named.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    creations.named.remove(&key);
                }
            }
        }
    }
}

impl EmbeddedStore {
    fn session_creations(&self) -> MutexGuard<'_, SessionCreations> {
        self.session_creations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a created task to its session's index in `batch`, indexing the session first when
    /// this is its first task. Hold the returned claim until the batch is committed: until
    /// then listings stop before the new session, and another first task of the same context
    /// joins it instead of indexing it again. The lock is held only for the bookkeeping, not
    /// for the commit. A `new_context` (generated for this task) needs no look-up.
    pub(super) fn index_session(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        task: &StoredTask,
        new_context: bool,
    ) -> Result<SessionClaim<'_>, StoreError> {
        let (app, id) = (task.app.as_str(), task.task.context_id.as_str());
        let s = &self.t.sessions;
        let mut claim = SessionClaim { store: self, position: None, named: None };
        let mut creations = self.session_creations();
        let joined = if new_context {
            None
        } else {
            let key = (app.to_string(), id.to_string());
            let joined = match creations.named.get_mut(&key) {
                Some((count, position)) => {
                    *count += 1;
                    Some(*position)
                }
                None => self.session_position(app, id)?,
            };
            claim.named = Some(key);
            joined
        };
        // One counter numbers sessions and the tasks within them, in creation order.
        creations.last += 1;
        let number = creations.last;
        if number > creations.reserved {
            creations.reserved = number + POSITION_BLOCK;
            batch.insert(&self.t.meta, POSITION_KEY, encode(&creations.reserved));
        }
        let position = match joined {
            Some(position) => position,
            None => {
                creations.pending.insert(number);
                claim.position = Some(number);
                let record = Record { id: id.to_string(), user_id: task.user.clone(), created_ms: task.created_ms };
                batch.insert(s, keys::at_position(&keys::sessions_of_app(app), number), encode(&record));
                number
            }
        };
        if let Some(key) = &claim.named {
            creations.named.entry(key.clone()).or_insert((1, position));
        }
        drop(creations);
        batch.insert(s, keys::session_task(app, id, number, &task.task.id), position.to_be_bytes());
        Ok(claim)
    }

    /// The position of a session, from its first task entry.
    fn session_position(&self, app: &str, id: &str) -> Result<Option<u64>, StoreError> {
        match self.t.sessions.prefix(keys::tasks_of_session(app, id)).next() {
            Some(item) => {
                let (_, value) = item.into_inner().map_err(unavailable)?;
                Ok(Some(keys::trailing_number(&value)))
            }
            None => Ok(None),
        }
    }

    fn read_entry(&self, app: &str, position: u64) -> Result<Option<SessionEntry>, StoreError> {
        match self.t.sessions.get(keys::at_position(&keys::sessions_of_app(app), position)).map_err(unavailable)? {
            Some(bytes) => Ok(Some(decode::<Record>(&bytes)?.entry(app, position))),
            None => Ok(None),
        }
    }

    fn read_session(&self, app: &str, id: &str) -> Result<Option<SessionEntry>, StoreError> {
        match self.session_position(app, id)? {
            Some(position) => self.read_entry(app, position),
            None => Ok(None),
        }
    }

    /// Removes index entries found left over (of tasks gone, of sessions begun again).
    fn remove_left_over(&self, entries: Vec<Vec<u8>>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = self.batch(false);
        for key in entries {
            batch.remove(&self.t.sessions, key);
        }
        batch.commit().map_err(unavailable)
    }

    /// Number of events in a task's log, counting those of a running turn not written yet.
    fn event_count(&self, task_id: &str) -> u64 {
        let live = self.lock(task_id);
        let written: usize = (self.t.events.prefix(keys::prefix(task_id)))
            .filter_map(|item| item.into_inner().ok())
            .map(|(key, value)| super::log::entries(&key, &value).count())
            .sum();
        (written + live.get(task_id).map_or(0, |l| l.pending.len())) as u64
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
        // Shown only once its creation's write reached the kernel (see `flush_buffered`).
        s.flush_buffered(u64::MAX)?;
        let prefix = keys::sessions_of_app(app);
        let settled = s.session_creations().settled();
        if after >= settled {
            return Ok(Vec::new());
        }
        let range = keys::at_position(&prefix, after + 1)..=keys::at_position(&prefix, settled);
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for item in s.t.sessions.range(range) {
            if out.len() == limit {
                break;
            }
            let (key, value) = item.into_inner().map_err(unavailable)?;
            let record: Record = decode(&value)?;
            if user.is_some_and(|user| user != record.user_id) {
                continue;
            }
            let position = keys::trailing_number(&key);
            // A session whose tasks all expired, then begun again under the same id, has a
            // newer entry: this one is left over.
            match s.session_position(app, &record.id)? {
                Some(current) if current != position => stale.push(key.to_vec()),
                _ => out.push(record.entry(app, position)),
            }
        }
        s.remove_left_over(stale)?;
        Ok(out)
    }

    async fn session(&self, app: &str, id: &str) -> Result<Option<SessionEntry>, StoreError> {
        self.0.flush_buffered(u64::MAX)?;
        self.0.read_session(app, id)
    }

    async fn session_tasks(&self, app: &str, id: &str) -> Result<Vec<SessionTask>, StoreError> {
        let s = &self.0;
        s.flush_buffered(u64::MAX)?;
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
        s.remove_left_over(gone)?;
        Ok(found)
    }

    async fn forget_session(&self, entry: &SessionEntry, only_if_empty: bool) -> Result<bool, StoreError> {
        let entry = entry.clone();
        self.0
            .durably(true, move |s| {
                let (app, id) = (entry.app.as_str(), entry.id.as_str());
                // Under the creations lock: no task of this context can begin committing meanwhile.
                let creations = s.session_creations();
                let order = keys::at_position(&keys::sessions_of_app(app), entry.position);
                if !s.t.sessions.contains_key(&order).map_err(unavailable)? {
                    return Ok(false);
                }
                let tasks = keys::tasks_of_session(app, id);
                let in_flight = creations.named.contains_key(&(app.to_string(), id.to_string()));
                let mut batch = s.batch(true);
                for item in s.t.sessions.prefix(&tasks) {
                    let (key, value) = item.into_inner().map_err(unavailable)?;
                    if value.as_ref() == entry.position.to_be_bytes() {
                        if only_if_empty {
                            return Ok(false);
                        }
                        batch.remove(&s.t.sessions, key);
                    }
                }
                if only_if_empty && in_flight {
                    return Ok(false);
                }
                batch.remove(&s.t.sessions, order);
                batch.commit().map_err(unavailable)?;
                Ok(true)
            })
            .await
    }
}
