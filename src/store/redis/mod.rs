//! The Redis backend: several switchyard instances share one Redis (standalone, or a cluster
//! through the hash-tagged keys of [`keys`]).
//!
//! - Store: each task is a hash (`seq`, `data`) with its event log in a stream and its push
//!   configs in a hash. A change is computed in Rust by the same state machine as the embedded
//!   store ([`transition`]) from the task at sequence N, then applied by one Lua script only if
//!   the task is still at N (optimistic concurrency across instances); the script also queues or
//!   acknowledges the turn's job, schedules expiry and publishes the event, all atomically.
//! - Queue: a stream read by one consumer group; each instance reads on its own connection,
//!   keeps the entries its workers hold alive, and reclaims entries whose worker went silent
//!   past the visibility timeout (its attempt counted, dead-lettered after the last one).
//!   Retries wait in a sorted set until due.
//! - Bus: events are published by the apply script and fanned out by every instance that has
//!   followers of the task ([`bus`]); cancellations are announced on one channel.

mod bus;
mod keys;
mod queue;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

pub use bus::RedisBus;
use keys::Keys;

use super::{Applied, Backend, Change, DeadLetter, LoggedEvent, StoreError, StoredTask, TaskStore};
use crate::clock::now_ms;
use crate::engine::state::transition;
use crate::protocol::{PushNotificationConfig, StreamEvent, TaskState};

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` (or `rediss://`).
    pub url: String,
    /// Prefix (and hash tag) of every key; instances with the same prefix form one deployment.
    pub prefix: String,
    /// How long terminal tasks are kept.
    pub task_ttl: Duration,
    /// A job whose worker has not reported for this long is taken over by another instance.
    pub visibility_timeout: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Bound on each command, so an unreachable Redis yields an error, not a hang.
    pub command_timeout: Duration,
}

impl RedisOptions {
    /// Defaults for `url`.
    pub fn new(url: &str) -> RedisOptions {
        RedisOptions {
            url: url.to_string(),
            prefix: "switchyard".into(),
            task_ttl: Duration::from_secs(7 * 86_400),
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 3,
            command_timeout: Duration::from_secs(2),
        }
    }
}

/// Connects to Redis and starts this instance's queue reader, lease keeper, reaper and retry
/// mover. Fails when Redis cannot be reached at start.
pub async fn open(options: &RedisOptions) -> Result<Backend, StoreError> {
    let client = redis::Client::open(options.url.as_str())
        .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL {}: {e}", options.url)))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.command_timeout))
        .set_response_timeout(Some(options.command_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let conn = tokio::time::timeout(options.command_timeout * 2, client.get_connection_manager_with_config(config))
        .await
        .map_err(|_| StoreError::Unavailable(format!("Redis at {} did not answer", options.url)))?
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to Redis at {}: {e}", options.url)))?;
    let keys = Keys::new(&options.prefix);
    let bus = RedisBus::connect(&client, keys.clone(), options.command_timeout).await?;
    let shared = Arc::new(Shared {
        client,
        conn,
        keys,
        options: options.clone(),
        consumer: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
        live: Mutex::new(HashMap::new()),
        leases: Mutex::new(HashMap::new()),
        waiting: AtomicUsize::new(0),
        wanted: tokio::sync::Notify::new(),
        ready: async_channel::unbounded(),
        closed: AtomicBool::new(false),
        max_attempts: AtomicU32::new(options.max_attempts),
    });
    queue::create_group(&shared).await?;
    queue::start(&shared);
    let backend = Arc::new(RedisBackend(shared));
    Ok(Backend { store: backend.clone(), queue: backend, bus })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into())
}

/// State shared by the store, the queue and their background loops.
pub(crate) struct Shared {
    client: redis::Client,
    /// Multiplexed, auto-reconnecting connection for every non-blocking command.
    conn: ConnectionManager,
    keys: Keys,
    options: RedisOptions,
    /// This instance's name in the consumer group.
    consumer: String,
    /// Tasks with a turn queued or running here, as last written by this instance. Saves the
    /// read before a write; a stale entry (another instance changed the task) fails the
    /// script's sequence check and is re-read.
    live: Mutex<HashMap<String, Arc<StoredTask>>>,
    /// Jobs held by this instance's workers: job id → queue entry id.
    leases: Mutex<HashMap<String, String>>,
    /// Workers waiting in `next`.
    waiting: AtomicUsize,
    wanted: tokio::sync::Notify,
    /// Jobs read or reclaimed for this instance's workers.
    ready: (async_channel::Sender<super::Job>, async_channel::Receiver<super::Job>),
    closed: AtomicBool,
    max_attempts: AtomicU32,
}

impl Shared {
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn lease(&self, job_id: &str, entry: Option<String>) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(entry) => leases.insert(job_id.to_string(), entry),
            None => leases.remove(job_id),
        };
    }

    fn leased_entry(&self, job_id: &str) -> Option<String> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).get(job_id).cloned()
    }

    fn cached(&self, task_id: &str) -> Option<Arc<StoredTask>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).cloned()
    }

    fn cache(&self, task: Option<Arc<StoredTask>>, task_id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match task {
            Some(task) if task.job_id.is_some() && !task.task.status.state.is_terminal() => {
                if live.len() >= LIVE_CACHE_LIMIT {
                    live.clear();
                }
                live.insert(task_id.to_string(), task);
            }
            _ => {
                live.remove(task_id);
            }
        }
    }

    async fn read_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        let data: Option<Vec<u8>> = self.conn().hget(self.keys.task(task_id), "data").await.map_err(unavailable)?;
        data.map(|d| decode(&d)).transpose()
    }

    /// Applies a change (and, for a dead-lettered job, records the letter in the same script).
    async fn apply(&self, change: Change, letter: Option<&DeadLetter>) -> Result<Applied, StoreError> {
        let task_id = change.task_id().to_string();
        let mut fresh = false;
        for _ in 0..MAX_CONFLICTS {
            let current = match self.cached(&task_id) {
                Some(task) if !fresh => Some(StoredTask::clone(&task)),
                _ => {
                    fresh = true;
                    self.read_task(&task_id).await?
                }
            };
            let expected = current.as_ref().map(|t| t.seq);
            let started = current.as_ref().map_or(0, |t| t.turn_started_ms);
            let mut next = current;
            let (event, effects) = match transition(&mut next, change.clone()) {
                Ok(v) => v,
                // A cached task may be stale: only a fresh read decides a rejection.
                Err(e) if fresh => return Err(e),
                Err(_) => {
                    fresh = true;
                    continue;
                }
            };
            let Some(stored) = next else { return Err(StoreError::TaskNotFound(task_id)) };
            let k = &self.keys;
            let event_json = encode(&event);
            let task_json = encode(&stored);
            let state = stored.task.status.state;
            let mut payload = format!("{{\"seq\":{},\"event\":", stored.seq).into_bytes();
            payload.extend_from_slice(&event_json);
            if event.is_final() {
                payload.extend_from_slice(b",\"task\":");
                payload.extend_from_slice(&task_json);
            }
            payload.push(b'}');
            let (drop_from, drop_to) = match effects.drop_events {
                Some((from, to)) => (from.to_string(), to.to_string()),
                None => (String::new(), String::new()),
            };
            let (job_id, job_json) = match &effects.enqueue {
                Some(job) => (job.id.clone(), encode(job)),
                None => (String::new(), Vec::new()),
            };
            let ttl = self.options.task_ttl.as_millis() as u64;
            let (push_id, push_json) = match &effects.push_config {
                Some(c) => (c.id.clone().unwrap_or_else(|| task_id.clone()), encode(c)),
                None => (String::new(), Vec::new()),
            };
            let outcome = match state {
                TaskState::Completed if effects.terminal => "completed",
                TaskState::Failed if effects.terminal => "failed",
                TaskState::Canceled if effects.terminal => "canceled",
                _ => "",
            };
            let processing = match (&effects.ack, started) {
                (Some(_), started) if started > 0 && event.is_final() => now_ms().saturating_sub(started).to_string(),
                _ => String::new(),
            };
            let wants_push = matches!(event, StreamEvent::Status(_) | StreamEvent::Task(_));
            let mut invocation = scripts::APPLY.prepare_invoke();
            invocation
                .key(k.task(&task_id))
                .key(k.events(&task_id))
                .key(k.push(&task_id))
                .key(k.queue())
                .key(k.jobs())
                .key(k.job_entries())
                .key(k.delayed())
                .key(k.expiry())
                .key(k.dead_letters())
                .key(k.dead_letter_index())
                .key(k.stats())
                .arg(expected.map(|s| s.to_string()).unwrap_or_default())
                .arg(stored.seq)
                .arg(&task_json)
                .arg(&event_json)
                .arg(drop_from)
                .arg(drop_to)
                .arg(&job_id)
                .arg(&job_json)
                .arg(effects.ack.as_deref().unwrap_or(""))
                .arg(if effects.terminal { ttl.to_string() } else { String::new() })
                .arg(now_ms() + ttl)
                .arg(&task_id)
                .arg(&push_id)
                .arg(&push_json)
                .arg(letter.map(encode).unwrap_or_default())
                .arg(if wants_push { "1" } else { "" })
                .arg(k.channel(&task_id))
                .arg(&payload)
                .arg(if matches!(change, Change::Cancel { .. }) { k.cancel_channel() } else { String::new() })
                .arg(outcome)
                .arg(processing)
                .arg(k.group());
            let reply: Vec<Vec<u8>> = invocation.invoke_async(&mut self.conn()).await.map_err(unavailable)?;
            match reply.first().map(Vec::as_slice) {
                Some(b"ok") => {}
                Some(b"exists") => return Err(StoreError::TaskExists(task_id)),
                _ => {
                    // Another instance changed the task since it was read.
                    fresh = true;
                    continue;
                }
            }
            let push_configs = reply[1..].iter().map(|c| decode(c)).collect::<Result<Vec<_>, _>>()?;
            let stored = Arc::new(stored);
            self.cache(Some(stored.clone()), &task_id);
            if let Some(job_id) = &effects.ack {
                self.lease(job_id, None);
            }
            return Ok(Applied { seq: stored.seq, event, task: stored, push_configs });
        }
        Err(StoreError::Unavailable(format!("task {task_id} kept changing under concurrent writers")))
    }
}

/// Entries of the per-instance live-task cache before it is reset.
const LIVE_CACHE_LIMIT: usize = 100_000;

/// Re-reads after a sequence conflict before giving up.
const MAX_CONFLICTS: usize = 16;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("Redis: {e}"))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Unavailable(format!("corrupt record in Redis: {e}")))
}

/// The store and queue facets over one connection.
pub struct RedisBackend(Arc<Shared>);

#[async_trait]
impl TaskStore for RedisBackend {
    async fn apply(&self, change: Change) -> Result<Applied, StoreError> {
        self.0.apply(change, None).await
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        self.0.read_task(task_id).await
    }

    async fn events_after(&self, task_id: &str, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        if after == u64::MAX {
            return Ok(Vec::new());
        }
        let reply: redis::streams::StreamRangeReply = self
            .0
            .conn()
            .xrange(self.0.keys.events(task_id), format!("{}-0", after + 1), "+")
            .await
            .map_err(unavailable)?;
        reply
            .ids
            .iter()
            .map(|entry| {
                let seq = entry.id.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let bytes: Vec<u8> = entry.get("e").unwrap_or_default();
                Ok(LoggedEvent { seq, event: decode(&bytes)?, snapshot: None })
            })
            .collect()
    }

    async fn set_push_config(&self, task_id: &str, config: PushNotificationConfig) -> Result<(), StoreError> {
        let k = &self.0.keys;
        let id = config.id.clone().unwrap_or_else(|| task_id.to_string());
        let stored: i64 = scripts::SET_PUSH
            .key(k.task(task_id))
            .key(k.push(task_id))
            .arg(id)
            .arg(encode(&config))
            .invoke_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        match stored {
            0 => Err(StoreError::TaskNotFound(task_id.to_string())),
            _ => Ok(()),
        }
    }

    async fn push_configs(&self, task_id: &str) -> Result<Vec<PushNotificationConfig>, StoreError> {
        let k = &self.0.keys;
        let (exists, configs): (bool, Vec<Vec<u8>>) = redis::pipe()
            .exists(k.task(task_id))
            .hvals(k.push(task_id))
            .query_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        if !exists {
            return Err(StoreError::TaskNotFound(task_id.to_string()));
        }
        configs.iter().map(|c| decode(c)).collect()
    }

    async fn delete_push_config(&self, task_id: &str, config_id: &str) -> Result<bool, StoreError> {
        let k = &self.0.keys;
        let deleted: i64 = scripts::DELETE_PUSH
            .key(k.task(task_id))
            .key(k.push(task_id))
            .arg(config_id)
            .invoke_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        match deleted {
            -1 => Err(StoreError::TaskNotFound(task_id.to_string())),
            n => Ok(n > 0),
        }
    }

    async fn sweep_expired(&self, now: u64) -> Result<usize, StoreError> {
        let k = &self.0.keys;
        let mut total = 0;
        loop {
            let swept: usize = scripts::SWEEP
                .key(k.expiry())
                .arg(now)
                .arg(SWEEP_BATCH)
                .arg(format!("{{{}}}", self.0.options.prefix))
                .invoke_async(&mut self.0.conn())
                .await
                .map_err(unavailable)?;
            total += swept;
            if swept < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    async fn health(&self) -> Result<(), StoreError> {
        let pong: String = redis::cmd("PING").query_async(&mut self.0.conn()).await.map_err(unavailable)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("Redis answered PING with {pong}")))
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// Expired tasks deleted per script call (keeps each call short).
const SWEEP_BATCH: usize = 500;
