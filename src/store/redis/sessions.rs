//! The session index on Redis: per session a hash (`user`, `created`, `position`, and a field
//! `t:<task id>` per task holding the task's position); per app, and per user of an app, a
//! sorted set of session ids scored by position. The apply script writes them with the task
//! that begins or joins a session, taking positions from one counter, so a position is never
//! reused and sessions appear in order.

use super::connection::RedisConn;
use async_trait::async_trait;

use super::keys::Keys;
use super::{decode, scripts, unavailable};
use crate::store::sessions::{SessionEntry, SessionIndex, SessionTask};
use crate::store::{StoreError, StoredTask};

/// The prefix of a session hash's task fields.
const TASK_FIELD: &str = "t:";

/// The Redis session index.
pub struct RedisSessions {
    pub(super) conn: RedisConn,
    pub(super) keys: Keys,
}

impl RedisSessions {
    /// The records of sessions of `app`, in the order of `ids` (skipping any forgotten meanwhile).
    async fn entries(&self, app: &str, ids: Vec<String>) -> Result<Vec<SessionEntry>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(self.keys.session(app, id)).arg("user").arg("created").arg("position");
        }
        let records: Vec<(Option<String>, Option<u64>, Option<u64>)> =
            pipe.query_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(ids
            .into_iter()
            .zip(records)
            .filter_map(|(id, record)| match record {
                (Some(user_id), Some(created_ms), Some(position)) => {
                    Some(SessionEntry { app: app.to_string(), id, user_id, created_ms, position })
                }
                _ => None,
            })
            .collect())
    }
}

#[async_trait]
impl SessionIndex for RedisSessions {
    async fn sessions(
        &self,
        app: &str,
        user: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let key = match user {
            Some(user) => self.keys.user_sessions(app, user),
            None => self.keys.sessions(app),
        };
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.entries(app, ids).await
    }

    async fn session(&self, app: &str, id: &str) -> Result<Option<SessionEntry>, StoreError> {
        Ok(self.entries(app, vec![id.to_string()]).await?.pop())
    }

    async fn session_tasks(&self, app: &str, id: &str) -> Result<Vec<SessionTask>, StoreError> {
        let mut conn = self.conn.clone();
        let session = self.keys.session(app, id);
        let legacy = self.keys.legacy_session_tasks(app, id);
        let (fields, legacy_tasks): (Vec<(String, String)>, Vec<(String, u64)>) = redis::pipe()
            .hgetall(&session)
            .zrange_withscores(&legacy, 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut indexed: Vec<(u64, String)> = fields
            .into_iter()
            .filter_map(|(field, position)| Some((position.parse().ok()?, field.strip_prefix(TASK_FIELD)?.to_string())))
            .chain(legacy_tasks.into_iter().map(|(task_id, position)| (position, task_id)))
            .collect();
        if indexed.is_empty() {
            return Ok(Vec::new());
        }
        indexed.sort_unstable();
        let mut pipe = redis::pipe();
        for (_, task_id) in &indexed {
            pipe.cmd("HMGET").arg(self.keys.task(task_id)).arg("data").arg("events");
        }
        let read: Vec<(Option<Vec<u8>>, Option<u64>)> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut found = Vec::new();
        let mut gone = Vec::new();
        for ((_, task_id), (data, event_count)) in indexed.into_iter().zip(read) {
            match data {
                Some(data) => found
                    .push(SessionTask { task: decode::<StoredTask>(&data)?, event_count: event_count.unwrap_or(0) }),
                None => gone.push(task_id),
            }
        }
        if !gone.is_empty() {
            let fields: Vec<String> = gone.iter().map(|task_id| format!("{TASK_FIELD}{task_id}")).collect();
            let _: () = redis::pipe()
                .hdel(&session, fields)
                .ignore()
                .zrem(&legacy, gone)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(found)
    }

    async fn forget_session(&self, entry: &SessionEntry, only_if_empty: bool) -> Result<bool, StoreError> {
        let (app, id) = (entry.app.as_str(), entry.id.as_str());
        let forgotten: i64 = scripts::FORGET_SESSION
            .key(self.keys.session(app, id))
            .key(self.keys.sessions(app))
            .key(self.keys.legacy_session_tasks(app, id))
            .arg(id)
            .arg(self.keys.user_sessions_prefix(app))
            .arg(if only_if_empty { "1" } else { "" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(forgotten == 1)
    }
}
