//! The Redis backend: several switchyard instances share one Redis (standalone, or a cluster
//! through the hash-tagged keys of [`keys`]).
//!
//! - Store: each task is a hash (`seq`, `data`, and its event log as `e:<seq>` fields) with its
//!   push configs in a second hash. A change is computed in Rust by the same state machine as
//!   the embedded store ([`transition`]) from the task at sequence N, then applied by one Lua
//!   script only if the task is still at N (optimistic concurrency across instances); the
//!   script also queues or acknowledges the turn's job, schedules expiry and publishes the
//!   event, all atomically.
//! - Queue: a stream read by one consumer group; each instance reads on its own connection,
//!   keeps the entries its workers hold alive, and reclaims entries whose worker went silent
//!   past the visibility timeout (its attempt counted, dead-lettered after the last one).
//!   Retries wait in a sorted set until due.
//! - Bus: events are published by the apply script and fanned out by every instance that has
//!   followers of the task ([`bus`]); cancellations are announced on one channel.

mod bus;
mod capture;
mod connection;
mod deliveries;
mod keys;
mod limits;
mod queue;
mod scripts;
mod sessions;
mod tenants;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

pub use bus::RedisBus;
use connection::{Deployment, RedisConn};
use keys::Keys;

use super::{Applied, Backend, Change, DeadLetter, Job, LoggedEvent, StoreError, StoredTask, TaskStore};
use crate::clock::now_ms;
use crate::engine::state::{transition, Effects};
use crate::protocol::json::WriteJson;
use crate::protocol::{PushNotificationConfig, StreamEvent, TaskState};

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` (or `rediss://`); a comma-separated list names the seed nodes of
    /// a Redis Cluster.
    pub url: String,
    /// Use the cluster client even when `url` names one node.
    pub cluster: bool,
    /// Prefix (and hash tag) of every key; instances with the same prefix form one deployment.
    pub prefix: String,
    /// How long terminal tasks are kept.
    pub task_ttl: Duration,
    /// A job whose worker has not reported for this long is taken over by another instance.
    pub visibility_timeout: Duration,
    /// Queued turns this instance may take ahead of its workers when it creates a task (see
    /// [`Shared::should_claim`]); 0 (the default here; `serve` uses 4 × its workers) takes
    /// turns only for idle workers. Taken turns count as running in the queue's stats.
    pub prefetch: usize,
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
            cluster: false,
            prefix: "switchyard".into(),
            task_ttl: Duration::from_secs(7 * 86_400),
            visibility_timeout: Duration::from_secs(30),
            prefetch: 0,
            max_attempts: 3,
            command_timeout: Duration::from_secs(2),
        }
    }
}

/// Connects to Redis and starts this instance's queue reader, lease keeper, reaper and retry
/// mover. Fails when Redis cannot be reached at start.
pub async fn open(options: &RedisOptions) -> Result<Backend, StoreError> {
    let deployment = Deployment::new(options)?;
    let conn = deployment.connect().await?;
    let keys = Keys::new(&options.prefix);
    let bus = RedisBus::connect(&deployment, keys.clone(), options.command_timeout).await?;
    let shared = Arc::new(Shared {
        deployment,
        conn,
        keys,
        options: options.clone(),
        bus: bus.clone(),
        consumer: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
        live: Mutex::new(HashMap::new()),
        stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        hasher: std::collections::hash_map::RandomState::new(),
        leases: Mutex::new(HashMap::new()),
        waiting: AtomicUsize::new(0),
        wanted: tokio::sync::Notify::new(),
        ready: async_channel::unbounded(),
        closed: AtomicBool::new(false),
        max_attempts: AtomicU32::new(options.max_attempts),
        writes_failing: AtomicBool::new(false),
    });
    queue::create_group(&shared).await?;
    queue::start(&shared);
    let tenants = Arc::new(tenants::RedisTenants {
        conn: shared.conn.clone(),
        keys: shared.keys.clone(),
        changes: bus.tenancy_changes().clone(),
    });
    let limits = Arc::new(limits::RedisCounter { conn: shared.conn.clone(), keys: shared.keys.clone() });
    let sessions = Arc::new(sessions::RedisSessions { conn: shared.conn.clone(), keys: shared.keys.clone() });
    let capture =
        Arc::new(capture::RedisCapture { conn: shared.conn.clone(), keys: shared.keys.clone(), bus: bus.clone() });
    let deliveries = Arc::new(deliveries::RedisDeliveries { conn: shared.conn.clone(), keys: shared.keys.clone() });
    let backend = Arc::new(RedisBackend(shared));
    Ok(Backend { store: backend.clone(), queue: backend, bus, tenants, sessions, limits, capture, deliveries })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into())
}

/// State shared by the store, the queue and their background loops.
pub(crate) struct Shared {
    deployment: Deployment,
    /// Multiplexed, auto-reconnecting connection for every non-blocking command.
    conn: RedisConn,
    keys: Keys,
    options: RedisOptions,
    bus: Arc<RedisBus>,
    /// This instance's name in the consumer group.
    consumer: String,
    /// Tasks with a turn queued or running here, as last written by this instance. Saves the
    /// read before a write; a stale entry (another instance changed the task) fails the
    /// script's sequence check and is re-read.
    live: Mutex<HashMap<String, LiveTask>>,
    /// Per-task write serialization on this instance.
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
    /// Jobs held by this instance's workers: job id → queue entry id.
    leases: Mutex<HashMap<String, String>>,
    /// Workers waiting in `next`.
    waiting: AtomicUsize,
    wanted: tokio::sync::Notify,
    /// Jobs read or reclaimed for this instance's workers.
    ready: (async_channel::Sender<super::Job>, async_channel::Receiver<super::Job>),
    closed: AtomicBool,
    max_attempts: AtomicU32,
    /// The last task write failed (Redis is away): creations are written at once meanwhile,
    /// so new work is refused promptly instead of running first.
    writes_failing: AtomicBool,
}

/// A task with a turn queued or running on this instance, as this instance last changed it.
#[derive(Clone)]
struct LiveTask {
    task: Arc<StoredTask>,
    /// Sequence of the task's record in Redis (what the next write expects to find).
    persisted_seq: u64,
    /// Progress events of the running turn not written yet, oldest first.
    pending: Vec<PendingEvent>,
    flush_scheduled: bool,
    /// A creation not written yet (see [`Change::defers_creation`]): its turn was handed to a
    /// worker here without a queue entry, and the task's first write creates it.
    kept_back: Option<KeptBack>,
}

/// A creation kept back until the task's first write.
#[derive(Clone)]
struct KeptBack {
    job: Job,
    /// The task's context id was generated for it: its session is new.
    new_context: bool,
}

#[derive(Clone)]
struct PendingEvent {
    seq: u64,
    event: StreamEvent,
    json: Vec<u8>,
    /// What other instances receive: `{"src","seq","event"[,"task"]}`; empty when the event
    /// is not published.
    payload: Vec<u8>,
}

impl PendingEvent {
    fn new(source: &str, seq: u64, event: &StreamEvent, task: &StoredTask, published: bool) -> PendingEvent {
        let json = event.to_json();
        if !published {
            return PendingEvent { seq, event: event.clone(), json, payload: Vec::new() };
        }
        let mut payload = format!("{{\"src\":\"{source}\",\"seq\":{seq},\"event\":").into_bytes();
        payload.extend_from_slice(&json);
        if event.is_final() {
            // A final event carries the task, so a waiting message/send need not read it back.
            payload.extend_from_slice(b",\"task\":");
            payload.extend_from_slice(&encode(task));
        }
        payload.push(b'}');
        PendingEvent { seq, event: event.clone(), json, payload }
    }
}

/// What one write carries besides the task record and its events.
#[derive(Default)]
struct WriteEffects<'a> {
    effects: Effects,
    /// Claim the next queue entry for an idle worker of this instance.
    claim: bool,
    letter: Option<&'a DeadLetter>,
    cancel: bool,
    wants_push: bool,
    processing_ms: Option<u64>,
    /// The enqueued job waits in the delayed set until then (a retry's backoff).
    enqueue_due_ms: Option<u64>,
    /// The acknowledged job was never queued in Redis (a kept-back creation's): nothing to
    /// take off the queue.
    job_unqueued: bool,
    /// A creation whose context id was generated for it: its session is begun without checking
    /// whether another task began it.
    new_session: bool,
}

impl WriteEffects<'_> {
    /// A creation that needs nothing read and nothing answered: a kept-back task's one write
    /// at its turn's end that begins a new session (no queue entry, no push configs, no dead
    /// letter, nothing published to other instances, no earlier events to drop). Its id is
    /// fresh (a time-ordered UUID made here), so no check that the task is new is needed.
    fn is_plain_creation(&self, stored: &StoredTask, events: &[PendingEvent]) -> bool {
        let e = &self.effects;
        self.job_unqueued
            && self.new_session
            && e.enqueue.is_none()
            && e.drop_events.is_none()
            && e.push_config.is_none()
            && !e.revived
            && e.undead.is_none()
            && self.letter.is_none()
            && !self.cancel
            && !self.claim
            && !stored.has_push
            && events.iter().all(|e| e.payload.is_empty())
    }
}

impl Shared {
    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    fn lease(&self, job_id: &str, entry: Option<String>) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(entry) => leases.insert(job_id.to_string(), entry),
            None => leases.remove(job_id),
        };
    }

    /// A worker here waits for a job that nothing has been read for yet.
    fn has_idle_worker(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Acquire) > self.ready.1.len()
    }

    /// Whether a write that queues a turn also takes the next queue entry for this instance's
    /// workers: when one is idle, or while fewer than `prefetch` taken turns wait here. The
    /// entry taken is the oldest one waiting: the turn just queued unless turns are already
    /// waiting in the stream (more in flight than workers and prefetch), and then the new turn
    /// waits its turn too. Taking its own turn spares the submitting instance a subscription
    /// over Redis and a log read per follower; the bound keeps other instances' idle workers
    /// from waiting while turns queue up here (lower it for agents whose turns take seconds).
    fn should_claim(&self) -> bool {
        self.has_idle_worker() || self.ready.1.len() < self.options.prefetch
    }

    /// Gives a claimed entry to this instance's workers; true when it is the job `queued`.
    fn hand_to_worker(&self, (entry, job): (String, Job), queued: Option<&str>) -> bool {
        let mine = queued == Some(job.id.as_str());
        self.lease(&job.id, Some(entry));
        // Unbounded: never fails while the queue is open; a closed queue leaves the entry to
        // the reaper of another instance.
        let handed = self.ready.0.try_send(job).is_ok();
        mine && handed
    }

    fn leased_entry(&self, job_id: &str) -> Option<String> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).get(job_id).cloned()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveTask>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serializes this instance's writes to one task (held across the Redis round trip).
    fn stripe(&self, task_id: &str) -> &tokio::sync::Mutex<()> {
        &self.stripes[(self.hasher.hash_one(task_id) as usize) % self.stripes.len()]
    }

    async fn read_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        let data: Option<Vec<u8>> = self.conn().hget(self.keys.task(task_id), "data").await.map_err(unavailable)?;
        data.map(|d| decode(&d)).transpose()
    }

    /// The task as this instance knows it best: with progress not yet written, when a turn runs here.
    async fn current_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        if let Some(live) = self.live().get(task_id).filter(|l| !l.pending.is_empty()) {
            return Ok(Some(StoredTask::clone(&live.task)));
        }
        self.read_task(task_id).await
    }

    /// Applies a change (and, for a dead-lettered job, records the letter in the same write).
    ///
    /// Progress of a turn running here (`working` without push configs, artifact chunks) is not
    /// written at once: it waits up to [`FLUSH_DELAY`] and goes out with the next write or on its
    /// own, so a fast turn costs one write instead of one per event. Subscribers see each event
    /// once it is written, in order. A creation answered at its turn's end that a worker here
    /// can take at once is kept back: its turn gets no queue entry, and everything it logs is
    /// written with the turn's end, so such a task costs one write in all.
    async fn apply(self: &Arc<Self>, change: Change, letter: Option<&DeadLetter>) -> Result<Applied, StoreError> {
        let task_id = change.task_id().to_string();
        let creates_new_context = matches!(change, Change::Create { new_context: true, .. });
        let _serialized = self.stripe(&task_id).lock().await;
        // A creation a worker here can take at once stays here until its turn ends.
        let keep_back = change.defers_creation()
            && letter.is_none()
            && self.should_claim()
            && !self.closed.load(Ordering::Acquire)
            && !self.writes_failing.load(Ordering::Acquire);
        let mut fresh = false;
        // The cached task of a change it refused: kept (with its unwritten progress) unless a
        // fresh read shows it is stale.
        let mut refused_by_cache: Option<LiveTask> = None;
        for _ in 0..MAX_CONFLICTS {
            let cached = if fresh { None } else { self.live().remove(&task_id) };
            let backup = cached.clone();
            let (current, persisted_seq, mut pending, kept_back) = match cached {
                // A kept-back creation is not in Redis: its first write creates it.
                Some(live) if live.kept_back.is_some() => {
                    (Some(StoredTask::clone(&live.task)), None, live.pending, live.kept_back)
                }
                Some(live) => (Some(StoredTask::clone(&live.task)), Some(live.persisted_seq), live.pending, None),
                // A new task's id is fresh: only the write can find it taken.
                None if keep_back => (None, None, Vec::new(), None),
                None => {
                    fresh = true;
                    let task = self.read_task(&task_id).await?;
                    let seq = task.as_ref().map(|t| t.seq);
                    (task, seq, Vec::new(), None)
                }
            };
            let started = current.as_ref().map_or(0, |t| t.turn_started_ms);
            let mut next = current;
            let (event, effects) = match transition(&mut next, change.clone()) {
                Ok(v) => v,
                // A cached task may be stale: only a fresh read decides a rejection. When it
                // agrees, the cache stands (a superseded attempt's write must not cost the
                // current attempt its unwritten progress).
                Err(e) if fresh => {
                    if let Some(live) = refused_by_cache.take() {
                        self.live().insert(task_id.clone(), live);
                    }
                    return Err(e);
                }
                Err(_) => {
                    refused_by_cache = backup;
                    fresh = true;
                    continue;
                }
            };
            let Some(stored) = next else { return Err(StoreError::TaskNotFound(task_id)) };
            let keep_live = stored.job_id.is_some() && !stored.task.status.state.is_terminal();
            if let Some((from, to)) = effects.drop_events {
                pending.retain(|e| e.seq <= from || e.seq > to);
            }
            // No other instance can follow a kept-back task: its events are not published.
            let published = !keep_back && kept_back.is_none();
            pending.push(PendingEvent::new(self.bus.source(), stored.seq, &event, &stored, published));
            let progress = match &change {
                Change::Artifact { .. } => true,
                Change::StartTurn { .. } => !stored.has_push && effects.drop_events.is_none(),
                _ => false,
            } && keep_live
                && letter.is_none();
            let stored = Arc::new(stored);
            if keep_back {
                if let Some(job) = effects.enqueue {
                    let seq = stored.seq;
                    let kept = KeptBack { job: job.clone(), new_context: creates_new_context };
                    self.keep_live(&task_id, stored.clone(), 0, pending, Some(kept));
                    self.lease(&job.id, Some(String::new()));
                    let turn_here = self.ready.0.try_send(job).is_ok();
                    let logged = Arc::new(LoggedEvent { seq, event, snapshot: None });
                    return Ok(Applied { seq, logged, task: stored, push_configs: Vec::new(), turn_here });
                }
            }
            if progress {
                let seq = stored.seq;
                self.keep_live(&task_id, stored.clone(), persisted_seq.unwrap_or(0), pending, kept_back);
                let logged = Arc::new(LoggedEvent { seq, event, snapshot: None });
                return Ok(Applied { seq, logged, task: stored, push_configs: Vec::new(), turn_here: false });
            }
            let claim = effects.enqueue.is_some() && self.should_claim();
            let write = WriteEffects {
                claim,
                processing_ms: (effects.ack.is_some() && started > 0 && event.is_final())
                    .then(|| now_ms().saturating_sub(started)),
                wants_push: matches!(event, StreamEvent::Status(_) | StreamEvent::Task(_)),
                cancel: matches!(change, Change::Cancel { .. }),
                letter,
                effects,
                enqueue_due_ms: None,
                job_unqueued: kept_back.is_some(),
                new_session: kept_back.as_ref().map_or(creates_new_context, |kept| kept.new_context),
            };
            match self.write(&task_id, persisted_seq, &stored, &pending, &write).await {
                Ok(Written::Done { push_configs, claimed }) => {
                    if keep_live {
                        self.keep_live(&task_id, stored.clone(), stored.seq, Vec::new(), None);
                    }
                    if let Some(job_id) = &write.effects.ack {
                        self.lease(job_id, None);
                    }
                    let queued = write.effects.enqueue.as_ref().map(|j| j.id.as_str());
                    let turn_here = claimed.is_some_and(|job| self.hand_to_worker(job, queued));
                    let logged = Arc::new(LoggedEvent { seq: stored.seq, event, snapshot: None });
                    return Ok(Applied { seq: stored.seq, logged, task: stored, push_configs, turn_here });
                }
                Ok(Written::Exists) => return Err(StoreError::TaskExists(task_id)),
                // Another instance changed the task since it was read: what was pending here
                // described a state that no longer exists.
                Ok(Written::Conflict) => fresh = true,
                Err(e) => {
                    if let Some(kept) = &kept_back {
                        self.abandon(&task_id, &kept.job, &e);
                    }
                    // Otherwise the turn fails and its retry re-creates the progress that was pending.
                    return Err(e);
                }
            }
        }
        Err(StoreError::Unavailable(format!("task {task_id} kept changing under concurrent writers")))
    }

    /// Caches a task whose turn runs here, and schedules a flush of its pending progress
    /// (none for a kept-back creation: its progress goes out with its first write).
    fn keep_live(
        self: &Arc<Self>,
        task_id: &str,
        task: Arc<StoredTask>,
        persisted_seq: u64,
        pending: Vec<PendingEvent>,
        kept_back: Option<KeptBack>,
    ) {
        let mut live = self.live();
        if live.len() >= LIVE_CACHE_LIMIT {
            // Entries with unwritten progress are worth keeping; a retry re-creates them anyway.
            live.retain(|_, l| !l.pending.is_empty());
        }
        let flush_scheduled = live.get(task_id).is_some_and(|l| l.flush_scheduled);
        let needs_flush = !pending.is_empty() && !flush_scheduled && kept_back.is_none();
        live.insert(
            task_id.to_string(),
            LiveTask { task, persisted_seq, pending, flush_scheduled: flush_scheduled || needs_flush, kept_back },
        );
        drop(live);
        if needs_flush {
            let shared = self.clone();
            let task_id = task_id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(FLUSH_DELAY).await;
                shared.flush(&task_id).await;
            });
        }
    }

    /// Gives up a kept-back task that cannot be written: no one was told of it, and its caller,
    /// whose follow ends here, follows again through Redis and hears why that fails too.
    fn abandon(&self, task_id: &str, job: &Job, error: &StoreError) {
        tracing::warn!(task_id, %error, "a task kept back for its turn's end cannot be written; dropping it");
        self.live().remove(task_id);
        self.lease(&job.id, None);
        self.bus.local().close(task_id);
    }

    /// Writes a kept-back task with its progress so far and `job` queued (due at `due_ms`, or
    /// at once): a retry's or a shutdown's. False when the task was not kept back here.
    pub(super) async fn write_kept_back(
        self: &Arc<Self>,
        task_id: &str,
        job: &Job,
        due_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let _serialized = self.stripe(task_id).lock().await;
        let Some(live) = self.live().remove(task_id) else { return Ok(false) };
        let Some(first) = live.kept_back.clone() else {
            self.live().insert(task_id.to_string(), live);
            return Ok(false);
        };
        let mut task = StoredTask::clone(&live.task);
        task.job_id = Some(job.id.clone());
        let task = Arc::new(task);
        let write = WriteEffects {
            effects: Effects { enqueue: Some(job.clone()), ..Effects::default() },
            enqueue_due_ms: due_ms,
            new_session: first.new_context,
            ..WriteEffects::default()
        };
        match self.write(task_id, None, &task, &live.pending, &write).await {
            Ok(Written::Done { .. }) => {
                self.live().insert(
                    task_id.to_string(),
                    LiveTask {
                        persisted_seq: task.seq,
                        task,
                        pending: Vec::new(),
                        flush_scheduled: false,
                        kept_back: None,
                    },
                );
                Ok(true)
            }
            Ok(Written::Exists | Written::Conflict) => Err(StoreError::TaskExists(task_id.to_string())),
            Err(e) => {
                self.abandon(task_id, &first.job, &e);
                Err(e)
            }
        }
    }

    /// Tasks kept back here, with their jobs.
    pub(super) fn kept_back(&self) -> Vec<(String, Job)> {
        self.live().iter().filter_map(|(id, l)| l.kept_back.as_ref().map(|k| (id.clone(), k.job.clone()))).collect()
    }

    /// Writes the pending progress of a task.
    async fn flush(self: &Arc<Self>, task_id: &str) {
        let _serialized = self.stripe(task_id).lock().await;
        let Some(live) = self.live().remove(task_id) else { return };
        if live.pending.is_empty() || live.kept_back.is_some() {
            self.live().insert(task_id.to_string(), LiveTask { flush_scheduled: false, ..live });
            return;
        }
        let written =
            self.write(task_id, Some(live.persisted_seq), &live.task, &live.pending, &WriteEffects::default()).await;
        match written {
            Ok(Written::Done { .. }) => {
                let seq = live.task.seq;
                self.live().insert(
                    task_id.to_string(),
                    LiveTask {
                        task: live.task,
                        persisted_seq: seq,
                        pending: Vec::new(),
                        flush_scheduled: false,
                        kept_back: None,
                    },
                );
            }
            // Changed elsewhere (canceled, taken over): the progress is moot.
            Ok(Written::Exists | Written::Conflict) => {}
            Err(e) => {
                // The turn's next write carries the progress, or the turn fails and is retried.
                tracing::debug!(task_id, error = %e, "cannot write turn progress yet");
                self.live().insert(task_id.to_string(), LiveTask { flush_scheduled: false, ..live });
            }
        }
    }

    /// One write: a plain creation's transaction when it is one, else an APPLY script call.
    async fn write(
        &self,
        task_id: &str,
        expected: Option<u64>,
        stored: &Arc<StoredTask>,
        events: &[PendingEvent],
        write: &WriteEffects<'_>,
    ) -> Result<Written, StoreError> {
        if expected.is_none() && write.is_plain_creation(stored, events) {
            return self.create_plainly(task_id, stored, events, write).await;
        }
        let k = &self.keys;
        let effects = &write.effects;
        let (record, task_json) = stored.encode_record();
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
            Some(c) => (c.id.clone().unwrap_or_else(|| task_id.to_string()), encode(c)),
            None => (String::new(), Vec::new()),
        };
        let outcome = outcome_counter(stored, effects).unwrap_or("");
        let mut invocation = scripts::APPLY.on(&self.conn).prepare_invoke();
        invocation
            .key(k.task(task_id))
            .key(k.push(task_id))
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
            .arg(&record)
            .arg(drop_from)
            .arg(drop_to)
            .arg(&job_id)
            .arg(&job_json)
            .arg(effects.ack.as_deref().filter(|_| !write.job_unqueued).unwrap_or(""))
            .arg(if effects.terminal { ttl.to_string() } else { String::new() })
            .arg(now_ms() + ttl)
            .arg(task_id)
            .arg(&push_id)
            .arg(&push_json)
            .arg(write.letter.map(encode).unwrap_or_default())
            .arg(if write.wants_push { "1" } else { "" })
            .arg(k.channel(task_id))
            .arg(if write.cancel { k.cancel_channel() } else { "" })
            .arg(outcome)
            .arg(write.processing_ms.map(|ms| ms.to_string()).unwrap_or_default())
            .arg(k.group())
            .arg(if effects.revived { "1" } else { "" })
            .arg(effects.undead.as_deref().unwrap_or(""))
            .arg(if write.claim { "1" } else { "" })
            .arg(&self.consumer);
        if expected.is_none() {
            // A creation: the task enters its session's index.
            let (app, context) = (stored.app.as_str(), stored.task.context_id.as_str());
            invocation
                .key(k.session(app, context))
                .key(k.sessions(app))
                .key(k.user_sessions(app, &stored.user))
                .key(k.session_position())
                .arg(&stored.user)
                .arg(stored.created_ms)
                .arg(context);
        } else {
            invocation.arg("").arg("").arg("");
        }
        invocation
            .arg(write.enqueue_due_ms.map(|ms| ms.to_string()).unwrap_or_default())
            .arg(if write.new_session { "1" } else { "" })
            .arg(if stored.has_push { "1" } else { "" });
        let published: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).filter(|p| !p.is_empty()).collect();
        invocation.arg(published.len());
        for payload in published {
            invocation.arg(payload);
        }
        for event in events {
            invocation.arg(format!("e:{}", event.seq)).arg(&event.json);
        }
        let reply: Result<Vec<Vec<u8>>, _> = invocation.invoke_async(&mut self.conn()).await;
        self.writes_failing.store(reply.is_err(), Ordering::Release);
        let reply = reply.map_err(unavailable)?;
        match reply.first().map(Vec::as_slice) {
            Some(b"ok") if reply.len() >= 3 => {
                // Followers here hear it directly; other instances through pub/sub.
                for event in events {
                    self.bus.local().publish(task_id, event.seq, &event.event, stored, Some(task_json.clone()));
                }
                let claimed = match (String::from_utf8_lossy(&reply[1]).into_owned(), &reply[2]) {
                    (entry, job) if !entry.is_empty() => Some((entry, decode::<Job>(job)?)),
                    _ => None,
                };
                let push_configs = reply[3..].iter().map(|c| decode(c)).collect::<Result<Vec<_>, _>>()?;
                Ok(Written::Done { push_configs, claimed })
            }
            Some(b"exists") => Ok(Written::Exists),
            _ => Ok(Written::Conflict),
        }
    }

    /// Writes a plain creation (see [`WriteEffects::is_plain_creation`]) as one MULTI/EXEC
    /// transaction: the keys and fields the APPLY script would write, as plain commands but
    /// for the new session's index (a small script: it numbers the session). APPLY's
    /// arguments (the record and events, ~2.5 KB of JSON per task) and a dozen calls from Lua
    /// cost Redis more than the commands themselves.
    async fn create_plainly(
        &self,
        task_id: &str,
        stored: &Arc<StoredTask>,
        events: &[PendingEvent],
        write: &WriteEffects<'_>,
    ) -> Result<Written, StoreError> {
        let k = &self.keys;
        let effects = &write.effects;
        let (app, context) = (stored.app.as_str(), stored.task.context_id.as_str());
        let task_key = k.task(task_id);
        let mut transaction = redis::pipe();
        transaction.atomic();
        transaction
            .cmd("EVAL")
            .arg(scripts::BEGIN_SESSION)
            .arg(4)
            .arg(k.session(app, context))
            .arg(k.sessions(app))
            .arg(k.user_sessions(app, &stored.user))
            .arg(k.session_position())
            .arg(task_id)
            .arg(&stored.user)
            .arg(stored.created_ms)
            .arg(context)
            .ignore();
        let (record, task_json) = stored.encode_record();
        let hset = transaction.cmd("HSET");
        hset.arg(&task_key).arg("seq").arg(stored.seq).arg("data").arg(&record).arg("events").arg(events.len());
        for event in events {
            hset.arg(format!("e:{}", event.seq)).arg(&event.json);
        }
        hset.ignore();
        if effects.terminal {
            let ttl = self.options.task_ttl.as_millis() as u64;
            transaction.cmd("PEXPIRE").arg(&task_key).arg(ttl).ignore();
            transaction.cmd("ZADD").arg(k.expiry()).arg(now_ms() + ttl).arg(task_id).ignore();
        }
        if let Some(outcome) = outcome_counter(stored, effects) {
            transaction.cmd("HINCRBY").arg(k.stats()).arg(outcome).arg(1).ignore();
        }
        if let Some(ms) = write.processing_ms {
            transaction.cmd("HINCRBY").arg(k.stats()).arg("processed").arg(1).ignore();
            transaction.cmd("HINCRBY").arg(k.stats()).arg("processing_ms").arg(ms).ignore();
        }
        let reply: Result<(), _> = transaction.query_async(&mut self.conn()).await;
        self.writes_failing.store(reply.is_err(), Ordering::Release);
        reply.map_err(unavailable)?;
        for event in events {
            self.bus.local().publish(task_id, event.seq, &event.event, stored, Some(task_json.clone()));
        }
        Ok(Written::Done { push_configs: Vec::new(), claimed: None })
    }
}

/// The counter of finished tasks a write bumps: when the task became terminal.
fn outcome_counter(stored: &StoredTask, effects: &Effects) -> Option<&'static str> {
    match stored.task.status.state {
        TaskState::Completed if effects.terminal => Some("completed"),
        TaskState::Failed if effects.terminal => Some("failed"),
        TaskState::Canceled if effects.terminal => Some("canceled"),
        _ => None,
    }
}

/// The outcome of one write.
enum Written {
    /// Written; the task's push configs when they were asked for, and the queue entry claimed
    /// for an idle worker here.
    Done { push_configs: Vec<PushNotificationConfig>, claimed: Option<(String, Job)> },
    /// A create found the task already there.
    Exists,
    /// The task changed since it was read.
    Conflict,
}

/// How long a running turn's progress may wait to be written with the turn's next event.
const FLUSH_DELAY: Duration = Duration::from_millis(2);

/// Entries of the per-instance live-task cache before it is reset.
const LIVE_CACHE_LIMIT: usize = 100_000;

/// Re-reads after a sequence conflict before giving up.
const MAX_CONFLICTS: usize = 16;

/// `text` with Redis glob metacharacters escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

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
        self.0.current_task(task_id).await
    }

    async fn events_after(&self, task_id: &str, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        if after == u64::MAX {
            return Ok(Vec::new());
        }
        // Serialized with this instance's writes, so a flush cannot move events between the
        // log read and the pending read.
        let _serialized = self.0.stripe(task_id).lock().await;
        let logged: Vec<(u64, Vec<u8>)> = scripts::READ_LOG
            .key(self.0.keys.task(task_id))
            .arg(after)
            .invoke_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        let mut events = logged
            .into_iter()
            .map(|(seq, json)| Ok(LoggedEvent { seq, event: decode(&json)?, snapshot: None }))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Progress of a turn running here that is not written yet.
        let last = events.last().map_or(after, |e| e.seq);
        if let Some(live) = self.0.live().get(task_id) {
            for pending in live.pending.iter().filter(|p| p.seq > last) {
                events.push(LoggedEvent { seq: pending.seq, event: pending.event.clone(), snapshot: None });
            }
        }
        Ok(events)
    }

    async fn set_push_config(&self, task_id: &str, config: PushNotificationConfig) -> Result<(), StoreError> {
        let k = &self.0.keys;
        let id = config.id.clone().unwrap_or_else(|| task_id.to_string());
        if let Some(live) = self.0.live().get_mut(task_id) {
            // A turn running here tells its status changes to the new config from now on.
            Arc::make_mut(&mut live.task).has_push = true;
        }
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

    async fn task_ids_of_app(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let k = &self.0.keys;
        let prefix = k.task("");
        let mut conn = self.0.conn();
        let mut ids = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) =
                conn.scan_near(&prefix, cursor, &format!("{}*", glob_escape(&prefix))).await.map_err(unavailable)?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.hget(key, "data");
                }
                let records: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
                for (key, record) in keys.iter().zip(records) {
                    if let Some(record) = record {
                        if super::app_of_record(&record)? == app {
                            ids.push(key[prefix.len()..].to_string());
                        }
                    }
                }
            }
            if next == 0 {
                return Ok(ids);
            }
            cursor = next;
        }
    }

    async fn remove_task(&self, task_id: &str) -> Result<bool, StoreError> {
        let k = &self.0.keys;
        let removed: i64 = scripts::REMOVE_TASK
            .key(k.task(task_id))
            .key(k.push(task_id))
            .key(k.expiry())
            .arg(task_id)
            .invoke_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        match removed {
            -1 => Err(StoreError::Conflict(format!("Task {task_id} is still live"))),
            n => Ok(n == 1),
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
        if self.0.deployment.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }
}

/// Expired tasks deleted per script call (keeps each call short).
const SWEEP_BATCH: usize = 500;
