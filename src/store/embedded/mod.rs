//! The embedded backend: a fjall database in the data directory plus an in-process queue and
//! event bus. Zero setup, durable across `kill -9`.
//!
//! Why fjall (an LSM tree) rather than redb (a copy-on-write B-tree): every task turn is a run
//! of small writes (created, working, chunks, final state). In fjall a write batch is one
//! append to its journal plus a memtable insert, so each change costs microseconds and writers
//! on different tasks run in parallel. redb commits rewrite B-tree pages per transaction and
//! serialize all writers; measured here with the same engine, a redb-backed store topped out
//! near 1.8–3k message/send per second, an order of magnitude below the target.
//!
//! Durability: every committed batch is flushed from fjall's journal buffer to the kernel
//! before anyone hears of it, so an acknowledged change survives the process being killed.
//! One write is left in the buffer for its answerer to flush: the turn's end of a creation
//! kept back for a blocking `message/send`, which only its waiting creator can learn of (see
//! [`Snapshot::unflushed`]); answers that come close together then share one write to the
//! kernel. The background syncer flushes whatever such a write a gone creator left.
//! Surviving a power loss is the fsync policy's job: `always` fsyncs each acknowledged change
//! before answering; an interval (default 100 ms) fsyncs the journal in the background, so a
//! power loss loses at most that window.
//!
//! Changes to one task are serialized by a striped lock held only around the synchronous
//! read–transition–write–publish sequence (no await inside), so the bus sees each task's
//! events in sequence order and a reader never sees an event before the write it describes.

mod capture;
mod deliveries;
mod keys;
mod log;
mod sessions;
mod tenants;

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
// foldhash: these maps are keyed by task and job ids on every change; SipHash cost more
// than the lookups themselves.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::bus::LocalBus;
use super::{
    Applied, Backend, Change, DeadLetter, Job, LoggedEvent, Outcomes, QueueStats, StoreError, StoredTask, TaskQueue,
    TaskStore,
};
use crate::clock::now_ms;
use crate::engine::state::transition;
use crate::protocol::json::WriteJson;
use crate::protocol::{PushNotificationConfig, StreamEvent};

/// When journal writes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before any caller is answered about a change it must not lose: survives a power loss.
    Always,
    /// In the background at this interval: a power loss loses at most that much.
    Interval(Duration),
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            other => crate::config::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|e| format!("{e} (or `always`)")),
        }
    }
}

/// Settings of the embedded backend.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How long terminal tasks are kept.
    pub task_ttl: Duration,
    pub fsync: FsyncPolicy,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            task_ttl: Duration::from_secs(7 * 86_400),
            fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        }
    }
}

/// Opens the embedded backend in `data_dir`. `:memory:` gives a throwaway store in a temporary
/// directory on tmpfs (`/dev/shm`) when the machine has one, deleted when the process ends.
pub fn open(data_dir: &str, options: &EmbeddedOptions) -> Result<Backend, StoreError> {
    let (path, temporary, kind) = if data_dir == ":memory:" {
        let base =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        remove_abandoned_memory_stores(&base);
        let name = format!("{MEMORY_STORE_PREFIX}{}-{}", std::process::id(), uuid::Uuid::new_v4());
        (base.join(name), true, "memory")
    } else {
        (PathBuf::from(data_dir).join("store"), false, "embedded")
    };
    // Locked before the directory exists, so no other server can take it for abandoned.
    let memory_owner = temporary.then(|| MemoryOwner::lock(&path)).transpose()?;
    let db = Database::builder(&path)
        .temporary(temporary)
        // One background thread for flushes and compactions: on small machines more of them
        // compete with request handling for the same cores (12.5k vs 10.8k req/s on 2 cores).
        .worker_threads(1)
        .open()
        .map_err(|e| StoreError::Unavailable(format!("cannot open store at {}: {e}", path.display())))?;
    let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(unavailable);
    let tables = Tables {
        tasks: keyspace("tasks")?,
        events: keyspace("events")?,
        push: keyspace("push_configs")?,
        jobs: keyspace("jobs")?,
        dead: keyspace("dead_letters")?,
        meta: keyspace("meta")?,
        expiry: keyspace("expiry")?,
        sessions: keyspace("sessions")?,
    };
    let tenants = Arc::new(tenants::EmbeddedTenants::new(db.clone(), keyspace("tenancy")?));
    let outcomes = load_outcomes(&tables.meta)?;
    let session_position = sessions::load_position(&tables.meta)?;
    let group =
        (options.fsync == FsyncPolicy::Always && !temporary).then(|| GroupSync::start(path.clone())).transpose()?;
    let capture = Arc::new(capture::EmbeddedCapture::new(
        db.clone(),
        keyspace("capture_sessions")?,
        keyspace("capture_events")?,
        group.clone(),
    ));
    let deliveries =
        Arc::new(deliveries::EmbeddedDeliveries::new(db.clone(), keyspace("deliveries")?, keyspace("delivery_due")?));
    let (ready_tx, ready_rx) = async_channel::unbounded();
    let bus = Arc::new(LocalBus::default());
    let store = Arc::new(EmbeddedStore {
        db,
        t: tables,
        stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
        outcomes,
        session_creations: Mutex::new(sessions::SessionCreations::new(session_position)),
        hasher: foldhash::fast::RandomState::default(),
        bus: bus.clone(),
        ready_tx,
        ready_rx,
        leased: Mutex::new(HashSet::new()),
        closed: AtomicBool::new(false),
        group,
        buffered: AtomicU64::new(0),
        flushed: AtomicU64::new(0),
        task_ttl_ms: options.task_ttl.as_millis() as u64,
        kind,
        _memory_owner: memory_owner,
    });
    if let (FsyncPolicy::Interval(every), false) = (options.fsync, temporary) {
        spawn_journal_syncer(Arc::downgrade(&store), path.clone(), every)?;
    }
    let handle = Arc::new(EmbeddedHandle(store));
    Ok(Backend {
        store: handle.clone(),
        queue: handle.clone(),
        bus,
        tenants,
        sessions: handle.clone(),
        limits: Arc::new(super::limits::LocalCounter::default()),
        capture,
        deliveries,
    })
}

/// Name prefix of the directory behind a `:memory:` store; the owner's process id and a UUID
/// follow. Next to the directory, `<name>.lock` is locked by the owner for as long as it runs.
const MEMORY_STORE_PREFIX: &str = "switchyard-";

/// The lock that marks a `:memory:` store's directory as in use; its file goes when the store
/// closes (the directory is deleted by fjall).
struct MemoryOwner {
    path: PathBuf,
    _file: std::fs::File,
}

impl MemoryOwner {
    fn lock(store: &std::path::Path) -> Result<MemoryOwner, StoreError> {
        let path = lock_path(store);
        let file = std::fs::File::create(&path).map_err(unavailable)?;
        file.lock().map_err(unavailable)?;
        Ok(MemoryOwner { path, _file: file })
    }
}

impl Drop for MemoryOwner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_path(store: &std::path::Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Removes the directories of `:memory:` stores whose process is gone. A store deletes its own
/// when it closes, but a killed process leaves it behind, and on tmpfs (`/dev/shm`) it would
/// hold memory until the next reboot. A store is gone when its lock can be taken: the kernel
/// releases a dead process's locks, whatever process namespace it ran in. A directory without
/// a lock file (a store closing, or one of an older version) is left alone.
fn remove_abandoned_memory_stores(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let is_store = entry.file_name().to_str().is_some_and(|n| n.starts_with(MEMORY_STORE_PREFIX));
        if !is_store || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let store = entry.path();
        let lock = lock_path(&store);
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&lock) else { continue };
        if file.try_lock().is_err() {
            continue;
        }
        match std::fs::remove_dir_all(&store) {
            Ok(()) => tracing::info!(path = %store.display(), "removed the store of a :memory: server that is gone"),
            Err(e) => tracing::debug!(path = %store.display(), error = %e, "cannot remove an abandoned :memory: store"),
        }
        let _ = std::fs::remove_file(&lock);
    }
}

/// The outcome counters of every stripe.
fn load_outcomes(meta: &Keyspace) -> Result<Vec<Mutex<Outcomes>>, StoreError> {
    (0..LOCK_STRIPES)
        .map(|stripe| match meta.get(format!("outcomes/{stripe}")).map_err(unavailable)? {
            Some(bytes) => Ok(Mutex::new(decode(&bytes)?)),
            None => Ok(Mutex::new(Outcomes::default())),
        })
        .collect()
}

/// Every `every`, flushes what the journal's buffer holds to the kernel, then fsyncs fjall's
/// journal files through handles of its own, until the store is gone. `Database::persist`
/// could fsync too but holds the journal's writer lock during the fsync, stalling every
/// writer for its duration (p99 rose by ~2–3 ms in measurements); an fdatasync on another
/// descriptor of the same file makes the same kernel-buffered writes durable without the lock.
fn spawn_journal_syncer(
    store: std::sync::Weak<EmbeddedStore>,
    dir: PathBuf,
    every: Duration,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("journal-fsync".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(store) = store.upgrade() else { return };
            if let Err(e) = store.flush_buffered(u64::MAX) {
                tracing::error!(error = %e, "journal flush failed");
            }
            drop(store);
            sync_journals(&dir);
        })
        .map(drop)
        .map_err(unavailable)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Unavailable(format!("corrupt record: {e}")))
}

/// A task with a turn queued or running, cached while it is the truth.
#[derive(Default)]
struct LiveTask {
    task: Option<Arc<StoredTask>>,
    /// Encoded events of the running turn not written yet, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
    /// The task's creation, when it is kept back (see [`Change::defers_creation`]).
    kept_back: Option<KeptBack>,
}

/// A creation kept back until the task's next write, which also indexes its session; a retry
/// or a shutdown writes it with its job.
struct KeptBack {
    new_context: bool,
    job: Job,
}

/// Number of stripes of the per-task lock.
const LOCK_STRIPES: usize = 256;

struct Tables {
    /// task id → StoredTask JSON
    tasks: Keyspace,
    /// task id, seq of the newest event → the events one write logged (see `log`)
    events: Keyspace,
    /// task id, config id → PushNotificationConfig JSON
    push: Keyspace,
    /// job id → Job JSON (queued or running)
    jobs: Keyspace,
    /// job id → DeadLetter JSON
    dead: Keyspace,
    /// expiry ms, task id → empty
    expiry: Keyspace,
    /// `outcomes/{stripe}` → Outcomes JSON (counters of finished tasks, per lock stripe);
    /// `sessions/position` → the position of the newest session
    meta: Keyspace,
    /// The session index (see `keys` for its layout)
    sessions: Keyspace,
}

/// The embedded store and queue (one object: a task and its job are written together).
pub struct EmbeddedStore {
    db: Database,
    t: Tables,
    /// Striped per-task locks; each stripe also caches the tasks that have a job queued or
    /// running. A cached task is the truth: its intermediate changes (working, chunks) are only
    /// logged as events, and its record is written at the points a client is told about.
    stripes: Vec<Mutex<HashMap<String, LiveTask>>>,
    /// Outcome counters per stripe, changed under the stripe's lock and written in the same
    /// batch as the change they count, so they are exact across crashes.
    outcomes: Vec<Mutex<Outcomes>>,
    /// Sessions being indexed by task creations not committed yet.
    session_creations: Mutex<sessions::SessionCreations>,
    hasher: foldhash::fast::RandomState,
    bus: Arc<LocalBus>,
    ready_tx: async_channel::Sender<Job>,
    ready_rx: async_channel::Receiver<Job>,
    /// Jobs handed to a worker and not yet acknowledged, retried or dead-lettered.
    leased: Mutex<HashSet<String>>,
    closed: AtomicBool,
    /// Group fsync under the `always` policy.
    group: Option<Arc<GroupSync>>,
    /// Writes left in the journal's buffer for their answerers to flush are numbered: the
    /// newest number given, and one below which every such write is known to be flushed.
    buffered: AtomicU64,
    flushed: AtomicU64,
    task_ttl_ms: u64,
    kind: &'static str,
    /// Held while a `:memory:` store runs (see [`remove_abandoned_memory_stores`]).
    _memory_owner: Option<MemoryOwner>,
}

impl EmbeddedStore {
    /// Serializes changes to one task; the guard holds the stripe's live-task cache.
    fn stripe_of(&self, task_id: &str) -> usize {
        (self.hasher.hash_one(task_id) as usize) % LOCK_STRIPES
    }

    fn lock(&self, task_id: &str) -> std::sync::MutexGuard<'_, HashMap<String, LiveTask>> {
        let stripe = &self.stripes[self.stripe_of(task_id)];
        stripe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write batch. Changes a client is told about reach the kernel on commit (and are then
    /// made durable by [`EmbeddedStore::durably`]); intermediate progress stays in fjall's
    /// journal buffer until the next such commit, since a retried turn re-creates it anyway.
    fn batch(&self, sync: bool) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(sync.then_some(PersistMode::Buffer))
    }

    /// Records that a worker took (`lease`) or let go of a job.
    fn release_or_lease(&self, job_id: &str, lease: bool) {
        let mut leased = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        if lease {
            leased.insert(job_id.to_string());
        } else {
            leased.remove(job_id);
        }
    }

    /// The task: from the live cache when a turn is queued or running, else from disk.
    fn current_task(&self, live: &mut HashMap<String, LiveTask>, task_id: &str) -> Result<LiveTask, StoreError> {
        match live.remove(task_id) {
            Some(task) => Ok(task),
            None => Ok(LiveTask { task: self.read_task(task_id)?.map(Arc::new), ..LiveTask::default() }),
        }
    }

    /// Adds the removal of a task's record, log and push configs to `batch`.
    fn remove_records(&self, batch: &mut fjall::OwnedWriteBatch, task_id: &str) -> Result<(), StoreError> {
        batch.remove(&self.t.tasks, task_id);
        for item in self.t.events.prefix(keys::prefix(task_id)) {
            batch.remove(&self.t.events, item.key().map_err(unavailable)?);
        }
        for item in self.t.push.prefix(keys::prefix(task_id)) {
            batch.remove(&self.t.push, item.key().map_err(unavailable)?);
        }
        Ok(())
    }

    /// Adds to `batch` the removal of a task's logged events `from + 1 ..= to`. A stored group
    /// that also holds events outside that range is written again with those alone.
    fn drop_logged(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        task_id: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        for item in self.t.events.range(keys::event(task_id, from + 1)..=keys::event(task_id, u64::MAX)) {
            let (key, value) = item.into_inner().map_err(unavailable)?;
            let (kept, dropped): (Vec<_>, Vec<_>) =
                log::entries(&key, &value).partition(|(seq, _)| *seq <= from || *seq > to);
            if dropped.is_empty() {
                continue;
            }
            let kept: Vec<(u64, Vec<u8>)> = kept.into_iter().map(|(seq, json)| (seq, json.to_vec())).collect();
            let rewritten = log::values(task_id, kept);
            // A batch's writes share one sequence number: the same key must not be both
            // removed and written in it.
            if !rewritten.iter().any(|(k, _)| *k == *key) {
                batch.remove(&self.t.events, key);
            }
            for (key, value) in rewritten {
                batch.insert(&self.t.events, key, value);
            }
        }
        Ok(())
    }

    /// Sequence of the newest logged event of a task.
    fn last_logged_seq(&self, task_id: &str) -> Result<u64, StoreError> {
        match self.t.events.prefix(keys::prefix(task_id)).next_back() {
            Some(item) => Ok(keys::event_seq(&item.key().map_err(unavailable)?)),
            None => Ok(0),
        }
    }

    fn read_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        match self.t.tasks.get(task_id).map_err(unavailable)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn task_exists(&self, task_id: &str) -> Result<bool, StoreError> {
        self.t.tasks.contains_key(task_id).map_err(unavailable)
    }

    /// Reads, transitions, writes and publishes one change under the task's lock. With
    /// `answerer_flushes`, the turn's end of a kept-back creation stays in the journal's buffer
    /// for the creator's answer to flush (see [`Snapshot::unflushed`]).
    fn apply_now(
        &self,
        change: Change,
        answerer_flushes: bool,
        extra: impl FnOnce(&mut fjall::OwnedWriteBatch, &Tables),
    ) -> Result<Applied, StoreError> {
        let task_id = change.task_id().to_string();
        let sync = change.needs_sync();
        let canceled = matches!(change, Change::Cancel { .. });
        let deferred = change.defers_creation();
        let creates = match &change {
            Change::Create { new_context, .. } => Some(*new_context),
            _ => None,
        };
        let mut live = self.lock(&task_id);
        let LiveTask { task: cached, mut pending, mut kept_back } = self.current_task(&mut live, &task_id)?;
        // The cache's Arc is usually the only one left by now: take the task without a copy.
        let mut current = cached.map(|t| Arc::try_unwrap(t).unwrap_or_else(|t| StoredTask::clone(&t)));
        let started = current.as_ref().map_or(0, |t| t.turn_started_ms);
        if let (Change::StartTurn { job }, Some(task)) = (&change, current.as_mut()) {
            if job.attempt > 1 {
                // The failed attempt may have logged events its record never saw.
                task.seq = task.seq.max(self.last_logged_seq(&task_id)?);
            }
        }
        let (event, effects) = match transition(&mut current, change) {
            Ok(v) => v,
            Err(e) => {
                if let Some(task) = current.filter(|t| t.job_id.is_some() && !t.task.status.state.is_terminal()) {
                    live.insert(task_id, LiveTask { task: Some(Arc::new(task)), pending, kept_back });
                }
                return Err(e);
            }
        };
        let Some(stored) = current else {
            return Err(StoreError::TaskNotFound(task_id));
        };
        let keep_live = stored.job_id.is_some() && !stored.task.status.state.is_terminal();
        let encoded_event = event.to_json();
        let seq = stored.seq;
        if deferred {
            if let (Some(new_context), Some(job)) = (creates, &effects.enqueue) {
                kept_back = Some(KeptBack { new_context, job: job.clone() });
            }
        }
        // Progress of a running turn (working, chunks) needs no write of its own: its events
        // wait in the cache and go out with the next write, since a retried turn re-creates them.
        let only_progress = deferred
            || (!sync
                && keep_live
                && effects.drop_events.is_none()
                && effects.enqueue.is_none()
                && effects.ack.is_none()
                && effects.push_config.is_none());
        let mut task_json = None;
        let mut unflushed = 0;
        if only_progress {
            pending.push((seq, encoded_event));
        } else {
            let first_write = kept_back.take();
            // Only the creator waiting for the turn's end can learn of a kept-back task, and
            // it flushes before it answers.
            let leave_buffered = answerer_flushes && sync && first_write.is_some();
            let mut batch = self.batch(sync && !leave_buffered);
            let t = &self.t;
            if sync || !keep_live || first_write.is_some() {
                let (record, json) = stored.encode_record();
                batch.insert(&t.tasks, task_id.as_str(), record);
                task_json = Some(json);
            }
            if let Some((from, to)) = effects.drop_events {
                pending.retain(|(seq, _)| *seq <= from || *seq > to);
                self.drop_logged(&mut batch, &task_id, from, to)?;
            }
            pending.push((seq, encoded_event));
            for (key, value) in log::values(&task_id, std::mem::take(&mut pending)) {
                batch.insert(&t.events, key, value);
            }
            if let Some(job) = &effects.enqueue {
                batch.insert(&t.jobs, job.id.as_str(), encode(job));
            }
            if let Some(job_id) = effects.ack.as_ref().filter(|_| first_write.is_none()) {
                batch.remove(&t.jobs, job_id.as_str());
            }
            if effects.terminal {
                batch.insert(&t.expiry, keys::expiry(now_ms() + self.task_ttl_ms, &task_id), Vec::<u8>::new());
            }
            if let Some(config) = &effects.push_config {
                let id = config.id.as_deref().unwrap_or(task_id.as_str());
                batch.insert(&t.push, keys::pair(&task_id, id), encode(config));
            }
            if let Some(id) = &effects.undead {
                batch.remove(&t.dead, id.as_str());
            }
            let processing_ms =
                (effects.ack.is_some() && started > 0 && event.is_final()).then(|| now_ms().saturating_sub(started));
            if effects.terminal || processing_ms.is_some() {
                let stripe = self.stripe_of(&task_id);
                let mut outcomes = self.outcomes[stripe].lock().unwrap_or_else(|p| p.into_inner());
                outcomes.count(stored.task.status.state, effects.terminal, processing_ms);
                batch.insert(&t.meta, format!("outcomes/{stripe}"), encode(&*outcomes));
            }
            extra(&mut batch, t);
            let _indexed = match creates.or(first_write.map(|w| w.new_context)) {
                Some(new_context) => Some(self.index_session(&mut batch, &stored, new_context)?),
                None => None,
            };
            batch.commit().map_err(unavailable)?;
            if leave_buffered {
                unflushed = self.buffered.fetch_add(1, Ordering::AcqRel) + 1;
            }
        }
        let push_configs = if stored.has_push && matches!(event, StreamEvent::Status(_) | StreamEvent::Task(_)) {
            self.read_push_configs(&task_id)?
        } else {
            Vec::new()
        };
        let stored = Arc::new(stored);
        let logged = Arc::new(LoggedEvent::on_bus(seq, event, &stored, task_json, unflushed));
        self.bus.deliver(&task_id, logged.clone());
        if canceled {
            self.bus.announce_cancel(&task_id);
        }
        if keep_live {
            live.insert(task_id, LiveTask { task: Some(stored.clone()), pending, kept_back });
        }
        drop(live);
        if let Some(job_id) = &effects.ack {
            self.release_or_lease(job_id, false);
        }
        if let Some(job) = effects.enqueue {
            let _ = self.ready_tx.try_send(job);
        }
        Ok(Applied { seq, logged, task: stored, push_configs, turn_here: true })
    }

    /// Writes a kept-back creation of a task with its pending events and `job` (queued again
    /// by a retry or a shutdown) in one batch. False when the task was written already.
    fn write_kept_back(&self, task_id: &str, job: &Job) -> Result<bool, StoreError> {
        let mut live = self.lock(task_id);
        let Some(entry) = live.get_mut(task_id) else { return Ok(false) };
        let (Some(first), Some(task)) = (entry.kept_back.take(), entry.task.clone()) else { return Ok(false) };
        let mut batch = self.batch(true);
        batch.insert(&self.t.tasks, task_id, encode(&*task));
        for (key, value) in log::values(task_id, std::mem::take(&mut entry.pending)) {
            batch.insert(&self.t.events, key, value);
        }
        batch.insert(&self.t.jobs, job.id.as_str(), encode(job));
        let _indexed = self.index_session(&mut batch, &task, first.new_context)?;
        batch.commit().map_err(unavailable)?;
        Ok(true)
    }

    /// Tasks whose creation is kept back, with their jobs.
    fn kept_back_tasks(&self) -> Vec<(String, Job)> {
        let mut out = Vec::new();
        for stripe in &self.stripes {
            let live = stripe.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(live.iter().filter_map(|(id, l)| l.kept_back.as_ref().map(|u| (id.clone(), u.job.clone()))));
        }
        out
    }

    fn read_push_configs(&self, task_id: &str) -> Result<Vec<PushNotificationConfig>, StoreError> {
        let mut out = Vec::new();
        for item in self.t.push.prefix(keys::prefix(task_id)) {
            let (_, value) = item.into_inner().map_err(unavailable)?;
            out.push(decode(&value)?);
        }
        Ok(out)
    }

    /// Makes sure the buffered write `ticket` (every one, with `u64::MAX`) reached the kernel:
    /// one flush covers every write numbered before it began.
    fn flush_buffered(&self, ticket: u64) -> Result<(), StoreError> {
        if ticket == 0 || self.flushed.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        // Writes numbered so far have committed (a number is taken after the commit), so the
        // flush below covers them all.
        let through = self.buffered.load(Ordering::Acquire);
        self.db.persist(PersistMode::Buffer).map_err(unavailable)?;
        self.flushed.fetch_max(through, Ordering::AcqRel);
        Ok(())
    }

    /// Runs store work; under the `always` policy, a change a client is told about then waits
    /// for a group fsync that covers it (concurrent changes share one fsync).
    async fn durably<T>(&self, sync: bool, f: impl FnOnce(&EmbeddedStore) -> T) -> T {
        let out = f(self);
        if let (true, Some(group)) = (sync, &self.group) {
            group.wait().await;
        }
        out
    }
}

/// Group commit for `--fsync always`: callers take a ticket after their write reached the
/// kernel; one thread fdatasyncs the journal files and releases every ticket taken before the
/// sync began.
struct GroupSync {
    dir: PathBuf,
    requested: Mutex<u64>,
    wake: std::sync::Condvar,
    done: tokio::sync::watch::Sender<u64>,
}

impl GroupSync {
    fn start(dir: PathBuf) -> Result<Arc<GroupSync>, StoreError> {
        let group = Arc::new(GroupSync {
            dir,
            requested: Mutex::new(0),
            wake: std::sync::Condvar::new(),
            done: tokio::sync::watch::channel(0).0,
        });
        let worker = group.clone();
        std::thread::Builder::new()
            .name("journal-group-fsync".into())
            .spawn(move || worker.run())
            .map_err(unavailable)?;
        Ok(group)
    }

    async fn wait(&self) {
        let ticket = {
            let mut requested = self.requested.lock().unwrap_or_else(|p| p.into_inner());
            *requested += 1;
            *requested
        };
        self.wake.notify_one();
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d >= ticket).await;
    }

    fn run(&self) {
        let mut completed = 0;
        loop {
            let target = {
                let mut requested = self.requested.lock().unwrap_or_else(|p| p.into_inner());
                while *requested <= completed {
                    requested = self.wake.wait(requested).unwrap_or_else(|p| p.into_inner());
                }
                *requested
            };
            sync_journals(&self.dir);
            completed = target;
            self.done.send_replace(completed);
        }
    }
}

/// fdatasyncs every journal file of the store in `dir` through descriptors of our own.
fn sync_journals(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "jnl") {
            // A journal deleted after a flush is simply gone; nothing to sync.
            if let Ok(file) = std::fs::File::open(&path) {
                if let Err(e) = file.sync_data() {
                    tracing::error!(error = %e, path = %path.display(), "journal fsync failed");
                }
            }
        }
    }
}

/// The backend facets (store and queue) over one shared embedded store.
pub struct EmbeddedHandle(Arc<EmbeddedStore>);

#[async_trait]
impl TaskStore for EmbeddedHandle {
    async fn apply(&self, change: Change) -> Result<Applied, StoreError> {
        let sync = change.needs_sync();
        let applied = self.0.apply_now(change, true, |_, _| {})?;
        // A write left buffered is made durable by its answerer (see `flushed`).
        if sync && applied.logged.unflushed() == 0 {
            self.0.durably(true, |_| ()).await;
        }
        Ok(applied)
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        if let Some(task) = self.0.lock(task_id).get(task_id).and_then(|l| l.task.as_deref()) {
            return Ok(Some(task.clone()));
        }
        self.0.read_task(task_id)
    }

    async fn events_after(&self, task_id: &str, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        // Under the task's lock, so a write moving pending events to disk cannot interleave.
        let live = self.0.lock(task_id);
        let range = keys::event(task_id, after + 1)..=keys::event(task_id, u64::MAX);
        for item in self.0.t.events.range(range) {
            let (key, value) = item.into_inner().map_err(unavailable)?;
            for (seq, json) in log::entries(&key, &value).filter(|(seq, _)| *seq > after) {
                out.push(LoggedEvent { seq, event: decode(json)?, snapshot: None });
            }
        }
        if let Some(task) = live.get(task_id) {
            for (seq, bytes) in task.pending.iter().filter(|(seq, _)| *seq > after) {
                out.push(LoggedEvent { seq: *seq, event: decode(bytes)?, snapshot: None });
            }
        }
        Ok(out)
    }

    async fn set_push_config(&self, task_id: &str, config: PushNotificationConfig) -> Result<(), StoreError> {
        let task_id = task_id.to_string();
        self.0
            .durably(true, move |s| {
                let mut live = s.lock(&task_id);
                if let Some(task) = live.get_mut(&task_id).and_then(|l| l.task.as_mut()) {
                    Arc::make_mut(task).has_push = true;
                }
                let Some(mut stored) = s.read_task(&task_id)? else {
                    return Err(StoreError::TaskNotFound(task_id));
                };
                let id = config.id.clone().unwrap_or_else(|| task_id.clone());
                let mut batch = s.batch(true);
                batch.insert(&s.t.push, keys::pair(&task_id, &id), encode(&config));
                if !stored.has_push {
                    // Flip the flag on the record only: a cached task keeps its newer state.
                    stored.has_push = true;
                    batch.insert(&s.t.tasks, task_id.as_str(), encode(&stored));
                }
                batch.commit().map_err(unavailable)
            })
            .await
    }

    async fn push_configs(&self, task_id: &str) -> Result<Vec<PushNotificationConfig>, StoreError> {
        if !self.0.task_exists(task_id)? {
            return Err(StoreError::TaskNotFound(task_id.to_string()));
        }
        self.0.read_push_configs(task_id)
    }

    async fn delete_push_config(&self, task_id: &str, config_id: &str) -> Result<bool, StoreError> {
        let (task_id, config_id) = (task_id.to_string(), config_id.to_string());
        self.0
            .durably(true, move |s| {
                let _guard = s.lock(&task_id);
                if !s.task_exists(&task_id)? {
                    return Err(StoreError::TaskNotFound(task_id));
                }
                let key = keys::pair(&task_id, &config_id);
                if !s.t.push.contains_key(&key).map_err(unavailable)? {
                    return Ok(false);
                }
                let mut batch = s.batch(true);
                batch.remove(&s.t.push, key);
                batch.commit().map_err(unavailable)?;
                Ok(true)
            })
            .await
    }

    async fn sweep_expired(&self, now: u64) -> Result<usize, StoreError> {
        let s = &self.0;
        let mut expired = Vec::new();
        for item in s.t.expiry.range(..keys::expiry(now, "")) {
            let key = item.key().map_err(unavailable)?;
            expired.push(key.to_vec());
        }
        let mut swept = 0;
        for key in &expired {
            let task_id = keys::expiry_task(key);
            let _guard = s.lock(&task_id);
            let mut batch = s.batch(false);
            batch.remove(&s.t.expiry, key.clone());
            if s.read_task(&task_id)?.is_some_and(|t| !t.task.status.state.is_terminal()) {
                // Requeued since it ended: it lives on.
                batch.commit().map_err(unavailable)?;
                continue;
            }
            swept += 1;
            s.remove_records(&mut batch, &task_id)?;
            batch.commit().map_err(unavailable)?;
        }
        Ok(swept)
    }

    async fn task_ids_of_app(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for item in self.0.t.tasks.iter() {
            let (key, value) = item.into_inner().map_err(unavailable)?;
            if super::app_of_record(&value)? == app {
                ids.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        Ok(ids)
    }

    async fn remove_task(&self, task_id: &str) -> Result<bool, StoreError> {
        let s = &self.0;
        let mut live = s.lock(task_id);
        let current = s.current_task(&mut live, task_id)?;
        let Some(task) = &current.task else { return Ok(false) };
        if !task.task.status.state.is_terminal() {
            live.insert(task_id.to_string(), current);
            return Err(StoreError::Conflict(format!("Task {task_id} is still live")));
        }
        let mut batch = s.batch(true);
        s.remove_records(&mut batch, task_id)?;
        batch.commit().map_err(unavailable)?;
        Ok(true)
    }

    async fn flushed(&self, unflushed: u64) -> Result<(), StoreError> {
        self.0.flush_buffered(unflushed)?;
        self.0.durably(true, |_| ()).await;
        Ok(())
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.0.t.tasks.get("health-probe").map(drop).map_err(unavailable)
    }

    fn kind(&self) -> &'static str {
        self.0.kind
    }
}

#[async_trait]
impl TaskQueue for EmbeddedHandle {
    async fn next(&self) -> Option<Job> {
        let s = &self.0;
        if s.closed.load(Ordering::Acquire) {
            return None;
        }
        let job = s.ready_rx.recv().await.ok()?;
        s.release_or_lease(&job.id, true);
        Some(job)
    }

    async fn retry(&self, mut job: Job, error: String, delay_ms: u64) -> Result<(), StoreError> {
        let s = &self.0;
        s.release_or_lease(&job.id, false);
        job.attempt += 1;
        job.last_error = Some(error);
        let stored = job.clone();
        s.durably(true, move |s| {
            // A kept-back creation is written now, with the job: its turn goes on later.
            if s.write_kept_back(&stored.task_id, &stored)? {
                return Ok(());
            }
            let mut batch = s.batch(true);
            batch.insert(&s.t.jobs, stored.id.as_str(), encode(&stored));
            batch.commit().map_err(unavailable)
        })
        .await?;
        let ready = s.ready_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let _ = ready.send(job).await;
        });
        Ok(())
    }

    async fn release(&self, job: &Job) {
        self.0.release_or_lease(&job.id, false);
    }

    async fn discard(&self, job: &Job) {
        let s = &self.0;
        s.release_or_lease(&job.id, false);
        let mut batch = s.batch(false);
        batch.remove(&s.t.jobs, job.id.as_str());
        if let Err(e) = batch.commit() {
            tracing::error!(error = %e, "cannot discard job");
        }
    }

    async fn dead_letter(&self, job: Job, error: String) -> Result<Applied, StoreError> {
        self.0.release_or_lease(&job.id, false);
        self.0.durably(true, move |s| dead_letter_now(s, job, error)).await
    }

    async fn recover(&self, max_attempts: u32) -> Result<(usize, usize), StoreError> {
        let s = &self.0;
        let mut jobs: Vec<Job> = Vec::new();
        for item in s.t.jobs.iter() {
            let (_, value) = item.into_inner().map_err(unavailable)?;
            jobs.push(decode(&value)?);
        }
        let (mut requeued, mut dead) = (0, 0);
        for mut job in jobs {
            // The job was queued or running when the process stopped: that run counts.
            if job.attempt >= max_attempts {
                let error = job.last_error.clone().unwrap_or_else(|| "the server stopped while the task ran".into());
                s.durably(true, move |s| dead_letter_now(s, job, error)).await?;
                dead += 1;
            } else {
                job.attempt += 1;
                let mut batch = s.batch(true);
                batch.insert(&s.t.jobs, job.id.as_str(), encode(&job));
                batch.commit().map_err(unavailable)?;
                let _ = s.ready_tx.send(job).await;
                requeued += 1;
            }
        }
        Ok((requeued, dead))
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let s = &self.0;
        let leased = s.leased.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (mut jobs, mut oldest) = (0u64, None::<u64>);
        let written = s.t.jobs.iter().map(|item| decode::<Job>(&item.into_inner().map_err(unavailable)?.1));
        let kept_back = s.kept_back_tasks().into_iter().map(|(_, job)| Ok(job));
        for job in written.chain(kept_back) {
            let job = job?;
            jobs += 1;
            if !leased.contains(&job.id) {
                oldest = Some(oldest.map_or(job.enqueued_ms, |o| o.min(job.enqueued_ms)));
            }
        }
        let mut outcomes = Outcomes::default();
        for stripe in &s.outcomes {
            outcomes.add(&stripe.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let dead = s.t.dead.len().map_err(unavailable)? as u64;
        Ok(QueueStats::from_counts(jobs, leased.len() as u64, dead, oldest, &outcomes))
    }

    async fn dead_letters(&self, limit: usize) -> Result<(Vec<DeadLetter>, u64), StoreError> {
        let mut letters = Vec::new();
        for item in self.0.t.dead.iter() {
            let (_, value) = item.into_inner().map_err(unavailable)?;
            letters.push(decode::<DeadLetter>(&value)?);
        }
        let total = letters.len() as u64;
        letters.sort_by_key(|l| std::cmp::Reverse(l.failed_ms));
        letters.truncate(limit);
        Ok((letters, total))
    }

    async fn requeue_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let Some(bytes) = self.0.t.dead.get(id).map_err(unavailable)? else { return Ok(false) };
        let letter: DeadLetter = decode(&bytes)?;
        let change = super::requeue_change(&letter);
        self.0.durably(true, move |s| s.apply_now(change, false, |_, _| {})).await?;
        Ok(true)
    }

    /// Writes the tasks whose creation was kept back, queued, so the next start runs them.
    async fn hand_back(&self) {
        let s = &self.0;
        for (task_id, job) in s.kept_back_tasks() {
            if let Err(e) = s.durably(true, |s| s.write_kept_back(&task_id, &job)).await {
                tracing::error!(task_id, error = %e, "cannot keep a stopped turn for the next start");
            }
        }
        // Turn ends left buffered for answers that never went out (their clients went away).
        if let Err(e) = s.durably(true, |s| s.flush_buffered(u64::MAX)).await {
            tracing::error!(error = %e, "cannot flush the journal");
        }
    }

    fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready_rx.close();
    }
}

/// Moves a job to the dead-letter queue and fails its task, in one batch.
fn dead_letter_now(s: &EmbeddedStore, job: Job, error: String) -> Result<Applied, StoreError> {
    let change = super::dead_letter_change(&job, &error);
    let letter = DeadLetter { job: job.clone(), error, failed_ms: now_ms() };
    s.apply_now(change, false, |batch, t| batch.insert(&t.dead, job.id.as_str(), encode(&letter)))
}

/// The facets of one embedded store.
impl From<Arc<EmbeddedStore>> for EmbeddedHandle {
    fn from(s: Arc<EmbeddedStore>) -> Self {
        EmbeddedHandle(s)
    }
}
