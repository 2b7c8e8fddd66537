//! Sessions: the A2A contexts of an app. The first task of a context indexes its session in the
//! same atomic write that creates the task, and numbers it with the next position of the
//! deployment (a counter advanced under that write), so positions follow the order in which
//! sessions became visible. Listing pages by position therefore returns every session exactly
//! once, even while new ones begin: a new session always lands after every page already read.
//!
//! The index holds only what does not change (who began the session, when, its tasks); activity
//! (last update, event count) is read from the tasks themselves. Tasks expire on their own, so
//! readers drop index entries of tasks that no longer exist, and a session with no task left is
//! forgotten.

use super::{StoreError, StoredTask};
use async_trait::async_trait;

/// The user of requests that carry no token subject (anonymous callers, the admin secret).
pub const DEFAULT_USER: &str = "default";

/// The user of records written before users were recorded.
pub fn default_user() -> String {
    DEFAULT_USER.to_string()
}

/// A session as indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEntry {
    pub app: String,
    /// The context id.
    pub id: String,
    /// The user whose message began the session.
    pub user_id: String,
    pub created_ms: u64,
    /// Where the session stands in the order sessions began (from 1); a listing cursor.
    pub position: u64,
}

/// A task of a session, with the number of events in its log.
#[derive(Debug, Clone)]
pub struct SessionTask {
    pub task: StoredTask,
    pub event_count: u64,
}

/// Reads and removals of the session index (its entries are written by [`super::TaskStore::apply`]).
#[async_trait]
pub trait SessionIndex: Send + Sync + 'static {
    /// Sessions of `app` (begun by `user`, when given) at positions after `after`, in order;
    /// at most `limit`.
    async fn sessions(
        &self,
        app: &str,
        user: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEntry>, StoreError>;
    /// One session of `app`.
    async fn session(&self, app: &str, id: &str) -> Result<Option<SessionEntry>, StoreError>;
    /// The session's tasks that still exist, oldest first. Index entries of tasks that no
    /// longer exist (expired, removed) are dropped on the way.
    async fn session_tasks(&self, app: &str, id: &str) -> Result<Vec<SessionTask>, StoreError>;
    /// Removes a session (as listed or looked up) from the index; with `only_if_empty`, only
    /// when no task of it is indexed (a task created meanwhile keeps it). Returns whether it
    /// was removed.
    async fn forget_session(&self, entry: &SessionEntry, only_if_empty: bool) -> Result<bool, StoreError>;
}
