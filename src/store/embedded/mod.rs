//! The embedded backend: a single redb file (or memory) plus an in-process queue and bus.
//!
//! Why redb: pure Rust, one file, ACID transactions over copy-on-write B-trees (a crash never
//! leaves a torn tree), and the fastest reads of the embedded stores measured for this project.
//! Writes go through one writer thread that *group-commits*: it drains every pending change
//! into one transaction, appends the batch's physical changes to the write-ahead log (`wal`)
//! with one `write`, and only then answers the callers, publishes the events on the bus in
//! order and hands new jobs to the workers. Every few hundred milliseconds of writes a
//! checkpoint (a durable redb commit) empties the log. See `wal.rs` for the fsync policy.

mod wal;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use super::{
    Applied, Backend, Change, DeadLetter, EventBus, Job, LoggedEvent, QueueStats, StoreError, StoredTask, TaskQueue,
    TaskStore,
};
use crate::clock::now_ms;
use crate::engine::state::transition;
use crate::protocol::{PushNotificationConfig, StreamEvent, TaskState, TaskStatus};
use wal::{ChangeLog, Key, Mutation, Wal};

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const PUSH: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("push_configs");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead_letters");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Table ids in the write-ahead log.
const T_TASKS: u8 = 0;
const T_EVENTS: u8 = 1;
const T_PUSH: u8 = 2;
const T_JOBS: u8 = 3;
const T_DEAD: u8 = 4;
const T_EXPIRY: u8 = 5;

/// Most changes one group commit takes.
const MAX_BATCH: usize = 512;
/// A checkpoint is due after this long with records in the log ...
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// ... or once the log is this large.
const CHECKPOINT_BYTES: u64 = 64 << 20;

/// When appended log records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before any caller is answered: an acknowledged write survives a power loss.
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

/// Opens the embedded backend in `data_dir` (`:memory:` for a throwaway in-memory store).
pub fn open(data_dir: &str, options: &EmbeddedOptions) -> Result<Backend, StoreError> {
    let (db, kind) = if data_dir == ":memory:" {
        let db =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(unavailable)?;
        (db, "memory")
    } else {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data dir {data_dir}: {e}")))?;
        let db = Database::create(Path::new(data_dir).join("switchyard.redb")).map_err(unavailable)?;
        (db, "embedded")
    };
    let db = Arc::new(db);
    let epoch = {
        // Create every table up front so readers never see a missing table.
        let tx = db.begin_write().map_err(unavailable)?;
        let epoch = {
            let meta = tx.open_table(META).map_err(unavailable)?;
            let epoch = meta.get("wal_epoch").map_err(unavailable)?.map(|v| v.value()).unwrap_or(0);
            epoch
        };
        tx.open_table(TASKS).map_err(unavailable)?;
        tx.open_table(EVENTS).map_err(unavailable)?;
        tx.open_table(PUSH).map_err(unavailable)?;
        tx.open_table(JOBS).map_err(unavailable)?;
        tx.open_table(DEAD).map_err(unavailable)?;
        tx.open_table(EXPIRY).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        epoch
    };
    let wal = if kind == "memory" {
        None
    } else {
        let path = Path::new(data_dir).join("switchyard.wal");
        let (wal, records) = Wal::open(&path, epoch)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        Some(replay(&db, wal, records, epoch)?)
    };
    let bus = Arc::new(LocalBus::default());
    let (ready_tx, ready_rx) = async_channel::unbounded();
    let (ops_tx, ops_rx) = mpsc::channel::<Op>();
    let stop = Arc::new(AtomicBool::new(false));
    if let (Some((wal, _)), FsyncPolicy::Interval(every)) = (&wal, options.fsync) {
        let handle = wal.sync_handle().map_err(unavailable)?;
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("wal-fsync".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(every);
                    if let Err(e) = handle.sync_data() {
                        tracing::error!(error = %e, "write-ahead log fsync failed");
                    }
                }
            })
            .map_err(unavailable)?;
    }
    let writer = Writer {
        db: db.clone(),
        bus: bus.clone(),
        ready: ready_tx.clone(),
        task_ttl_ms: options.task_ttl.as_millis() as u64,
        wal: wal.map(|(w, ())| w),
        epoch: epoch + 1,
        fsync: options.fsync,
        last_checkpoint: Instant::now(),
        stop,
    };
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(ops_rx))
        .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
    let store = Arc::new(EmbeddedStore {
        db,
        ops: ops_tx,
        ready_tx,
        ready_rx,
        running: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        kind,
    });
    Ok(Backend { store: store.clone(), queue: store, bus })
}

/// Applies the log records of the last run to the database and checkpoints (epoch + 1).
fn replay(db: &Database, mut wal: Wal, records: Vec<Vec<u8>>, epoch: u64) -> Result<(Wal, ()), StoreError> {
    let tx = db.begin_write().map_err(unavailable)?;
    {
        let mut tables = Tables::open(&tx, None).map_err(unavailable)?;
        for record in &records {
            let Some(mutations) = wal::decode(record) else {
                return Err(StoreError::Unavailable("write-ahead log record is malformed".into()));
            };
            for mutation in mutations {
                tables.replay(mutation).map_err(unavailable)?;
            }
        }
        tables.meta.insert("wal_epoch", epoch + 1).map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)?;
    wal.reset().map_err(unavailable)?;
    if !records.is_empty() {
        tracing::info!(records = records.len(), "replayed the write-ahead log");
    }
    Ok((wal, ()))
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

/// Work for the writer thread.
enum Op {
    Apply(Change, oneshot::Sender<Result<Applied, StoreError>>),
    SetPush(String, PushNotificationConfig, oneshot::Sender<Result<(), StoreError>>),
    DeletePush(String, String, oneshot::Sender<Result<bool, StoreError>>),
    Retry(Job, oneshot::Sender<Result<(), StoreError>>),
    Discard(Job, oneshot::Sender<Result<(), StoreError>>),
    DeadLetter(Job, String, oneshot::Sender<Result<Applied, StoreError>>),
    Sweep(u64, oneshot::Sender<Result<usize, StoreError>>),
}

/// What to do once a batch is committed.
enum Done {
    Apply(oneshot::Sender<Result<Applied, StoreError>>, Result<Applied, StoreError>, Option<Job>),
    Unit(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Bool(oneshot::Sender<Result<bool, StoreError>>, Result<bool, StoreError>),
    Count(oneshot::Sender<Result<usize, StoreError>>, Result<usize, StoreError>),
}

impl Done {
    fn fail(self, err: &StoreError) {
        match self {
            Done::Apply(tx, _, _) => drop(tx.send(Err(err.clone()))),
            Done::Unit(tx, _) => drop(tx.send(Err(err.clone()))),
            Done::Bool(tx, _) => drop(tx.send(Err(err.clone()))),
            Done::Count(tx, _) => drop(tx.send(Err(err.clone()))),
        }
    }
}

struct Writer {
    db: Arc<Database>,
    bus: Arc<LocalBus>,
    ready: async_channel::Sender<Job>,
    task_ttl_ms: u64,
    /// None for the in-memory store, whose commits are all "durable" (to memory).
    wal: Option<Wal>,
    /// Epoch of the records appended now (the one the last checkpoint stored).
    epoch: u64,
    fsync: FsyncPolicy,
    last_checkpoint: Instant,
    stop: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, ops: mpsc::Receiver<Op>) {
        loop {
            let first = match ops.recv_timeout(CHECKPOINT_EVERY) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Idle: make the log's records durable in the database and empty it.
                    if self.wal.as_ref().is_some_and(|w| !w.is_empty()) {
                        self.commit(Vec::new());
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
        if self.wal.as_ref().is_some_and(|w| !w.is_empty()) {
            self.commit(Vec::new());
        }
        self.stop.store(true, Ordering::Release);
    }

    /// One group commit: a checkpoint (durable redb commit, log emptied) when one is due,
    /// otherwise a fast commit whose changes are appended to the log before anyone hears back.
    fn commit(&mut self, batch: Vec<Op>) {
        let checkpoint = match &self.wal {
            None => true,
            Some(wal) => {
                wal.len() >= CHECKPOINT_BYTES || (!wal.is_empty() && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
            }
        };
        let mut done = Vec::with_capacity(batch.len());
        let mut log = ChangeLog::default();
        let result = (|| -> Result<(), redb::Error> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(if checkpoint { Durability::Immediate } else { Durability::None });
            {
                let mut tables = Tables::open(&tx, if checkpoint { None } else { Some(&mut log) })?;
                for op in batch {
                    done.push(self.execute(&mut tables, op)?);
                }
                if checkpoint && self.wal.is_some() {
                    tables.meta.insert("wal_epoch", self.epoch + 1)?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        let logged = match (result, &mut self.wal) {
            (Err(e), _) => Err(StoreError::Unavailable(e.to_string())),
            (Ok(()), Some(wal)) if checkpoint => {
                self.epoch += 1;
                self.last_checkpoint = Instant::now();
                wal.reset().map_err(unavailable)
            }
            (Ok(()), Some(wal)) if !log.is_empty() => wal
                .append(self.epoch, log.as_bytes())
                .and_then(|()| if self.fsync == FsyncPolicy::Always { wal.sync() } else { Ok(()) })
                .map_err(|e| StoreError::Unavailable(format!("write-ahead log: {e}"))),
            (Ok(()), _) => Ok(()),
        };
        if let Err(err) = logged {
            // Nobody is told of a change that might not survive: every caller hears the error.
            tracing::error!(error = %err, "store commit failed");
            for d in done {
                d.fail(&err);
            }
            return;
        }
        for d in done {
            match d {
                Done::Apply(tx, result, job) => {
                    if let Ok(applied) = &result {
                        self.bus.publish(&applied.task.task.id, applied.seq, &applied.event);
                    }
                    if let Some(job) = job {
                        let _ = self.ready.try_send(job);
                    }
                    let _ = tx.send(result);
                }
                Done::Unit(tx, r) => drop(tx.send(r)),
                Done::Bool(tx, r) => drop(tx.send(r)),
                Done::Count(tx, r) => drop(tx.send(r)),
            }
        }
    }

    /// Runs one op inside the open transaction. Errors of the op itself go to its caller;
    /// redb errors abort the whole batch.
    fn execute(&self, t: &mut Tables<'_>, op: Op) -> Result<Done, redb::Error> {
        Ok(match op {
            Op::Apply(change, reply) => match self.apply(t, change)? {
                Ok((applied, job)) => Done::Apply(reply, Ok(applied), job),
                Err(e) => Done::Apply(reply, Err(e), None),
            },
            Op::SetPush(task_id, config, reply) => {
                let r = if t.tasks.get(task_id.as_str())?.is_none() {
                    Err(StoreError::TaskNotFound(task_id))
                } else {
                    let id = config.id.clone().unwrap_or_else(|| task_id.clone());
                    t.put_push(&task_id, &id, &encode(&config))?;
                    Ok(())
                };
                Done::Unit(reply, r)
            }
            Op::DeletePush(task_id, config_id, reply) => {
                let r = if t.tasks.get(task_id.as_str())?.is_none() {
                    Err(StoreError::TaskNotFound(task_id))
                } else {
                    Ok(t.delete_push(&task_id, &config_id)?)
                };
                Done::Bool(reply, r)
            }
            Op::Retry(job, reply) => {
                t.put_job(&job.id, &encode(&job))?;
                Done::Unit(reply, Ok(()))
            }
            Op::Discard(job, reply) => {
                t.delete_job(&job.id)?;
                Done::Unit(reply, Ok(()))
            }
            Op::DeadLetter(job, error, reply) => {
                t.delete_job(&job.id)?;
                let letter = DeadLetter { job: job.clone(), error: error.clone(), failed_ms: now_ms() };
                t.put_dead(&job.id, &encode(&letter))?;
                let failed = crate::protocol::Message {
                    kind: Default::default(),
                    message_id: uuid::Uuid::new_v4().to_string(),
                    role: crate::protocol::Role::Agent,
                    parts: vec![crate::protocol::Part::text(format!(
                        "Task failed after {} attempts: {error}",
                        job.attempt
                    ))],
                    task_id: Some(job.task_id.clone()),
                    context_id: None,
                    reference_task_ids: None,
                    extensions: None,
                    metadata: None,
                };
                let change = Change::Status {
                    task_id: job.task_id.clone(),
                    status: TaskStatus::now(TaskState::Failed, Some(failed)),
                    is_final: true,
                    ack_job: Some(job.id.clone()),
                };
                match self.apply(t, change)? {
                    Ok((applied, _)) => Done::Apply(reply, Ok(applied), None),
                    Err(e) => Done::Apply(reply, Err(e), None),
                }
            }
            Op::Sweep(now, reply) => {
                let mut expired = Vec::new();
                for entry in t.expiry.range((0u64, "")..(now, ""))? {
                    let (key, _) = entry?;
                    let (at, id) = key.value();
                    expired.push((at, id.to_string()));
                }
                for (at, id) in &expired {
                    t.delete_expiry(*at, id)?;
                    t.delete_task(id)?;
                    let seqs: Vec<u64> = t
                        .events
                        .range((id.as_str(), 0u64)..=(id.as_str(), u64::MAX))?
                        .map_while(|e| e.ok())
                        .map(|(k, _)| k.value().1)
                        .collect();
                    for seq in seqs {
                        t.delete_event(id, seq)?;
                    }
                    let keys: Vec<String> = t
                        .push
                        .range((id.as_str(), "")..)?
                        .map_while(|e| e.ok())
                        .take_while(|(k, _)| k.value().0 == id.as_str())
                        .map(|(k, _)| k.value().1.to_string())
                        .collect();
                    for k in keys {
                        t.delete_push(id, &k)?;
                    }
                }
                Done::Count(reply, Ok(expired.len()))
            }
        })
    }

    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        t: &mut Tables<'_>,
        change: Change,
    ) -> Result<Result<(Applied, Option<Job>), StoreError>, redb::Error> {
        let task_id = change.task_id().to_string();
        let current: Option<StoredTask> = match t.tasks.get(task_id.as_str())? {
            Some(bytes) => match decode(bytes.value()) {
                Ok(v) => Some(v),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        };
        let (stored, event, effects) = match transition(current, change) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        t.put_task(&task_id, &encode(&stored))?;
        if let Some((from, to)) = effects.drop_events {
            for seq in from + 1..=to {
                t.delete_event(&task_id, seq)?;
            }
        }
        t.put_event(&task_id, stored.seq, &encode(&event))?;
        if let Some(job) = &effects.enqueue {
            t.put_job(&job.id, &encode(job))?;
        }
        if let Some(job_id) = &effects.ack {
            t.delete_job(job_id)?;
        }
        if effects.terminal {
            t.put_expiry(now_ms() + self.task_ttl_ms, &task_id)?;
        }
        if let Some(config) = &effects.push_config {
            let id = config.id.as_deref().unwrap_or(task_id.as_str());
            t.put_push(&task_id, id, &encode(config))?;
        }
        let mut push_configs = Vec::new();
        if matches!(event, StreamEvent::Status(_) | StreamEvent::Task(_)) {
            for entry in t.push.range((task_id.as_str(), "")..)? {
                let (key, value) = entry?;
                if key.value().0 != task_id.as_str() {
                    break;
                }
                if let Ok(config) = decode(value.value()) {
                    push_configs.push(config);
                }
            }
        }
        let seq = stored.seq;
        Ok(Ok((Applied { seq, event, task: Arc::new(stored), push_configs }, effects.enqueue)))
    }
}

/// The tables of one write transaction; every change is also recorded in the log, if any.
struct Tables<'tx> {
    tasks: redb::Table<'tx, &'static str, &'static [u8]>,
    events: redb::Table<'tx, (&'static str, u64), &'static [u8]>,
    push: redb::Table<'tx, (&'static str, &'static str), &'static [u8]>,
    jobs: redb::Table<'tx, &'static str, &'static [u8]>,
    dead: redb::Table<'tx, &'static str, &'static [u8]>,
    expiry: redb::Table<'tx, (u64, &'static str), ()>,
    meta: redb::Table<'tx, &'static str, u64>,
    log: Option<&'tx mut ChangeLog>,
}

impl<'tx> Tables<'tx> {
    fn open(tx: &'tx redb::WriteTransaction, log: Option<&'tx mut ChangeLog>) -> Result<Self, redb::Error> {
        Ok(Tables {
            tasks: tx.open_table(TASKS)?,
            events: tx.open_table(EVENTS)?,
            push: tx.open_table(PUSH)?,
            jobs: tx.open_table(JOBS)?,
            dead: tx.open_table(DEAD)?,
            expiry: tx.open_table(EXPIRY)?,
            meta: tx.open_table(META)?,
            log,
        })
    }

    fn record_put(&mut self, table: u8, key: Key<'_>, value: &[u8]) {
        if let Some(log) = self.log.as_deref_mut() {
            log.put(table, key, value);
        }
    }

    fn record_delete(&mut self, table: u8, key: Key<'_>) {
        if let Some(log) = self.log.as_deref_mut() {
            log.delete(table, key);
        }
    }

    fn put_task(&mut self, id: &str, value: &[u8]) -> Result<(), redb::Error> {
        self.tasks.insert(id, value)?;
        self.record_put(T_TASKS, Key::Str(id), value);
        Ok(())
    }

    fn delete_task(&mut self, id: &str) -> Result<(), redb::Error> {
        self.tasks.remove(id)?;
        self.record_delete(T_TASKS, Key::Str(id));
        Ok(())
    }

    fn put_event(&mut self, id: &str, seq: u64, value: &[u8]) -> Result<(), redb::Error> {
        self.events.insert((id, seq), value)?;
        self.record_put(T_EVENTS, Key::StrU64(id, seq), value);
        Ok(())
    }

    fn delete_event(&mut self, id: &str, seq: u64) -> Result<(), redb::Error> {
        self.events.remove((id, seq))?;
        self.record_delete(T_EVENTS, Key::StrU64(id, seq));
        Ok(())
    }

    fn put_push(&mut self, id: &str, config_id: &str, value: &[u8]) -> Result<(), redb::Error> {
        self.push.insert((id, config_id), value)?;
        self.record_put(T_PUSH, Key::StrStr(id, config_id), value);
        Ok(())
    }

    fn delete_push(&mut self, id: &str, config_id: &str) -> Result<bool, redb::Error> {
        let existed = self.push.remove((id, config_id))?.is_some();
        self.record_delete(T_PUSH, Key::StrStr(id, config_id));
        Ok(existed)
    }

    fn put_job(&mut self, id: &str, value: &[u8]) -> Result<(), redb::Error> {
        self.jobs.insert(id, value)?;
        self.record_put(T_JOBS, Key::Str(id), value);
        Ok(())
    }

    fn delete_job(&mut self, id: &str) -> Result<(), redb::Error> {
        self.jobs.remove(id)?;
        self.record_delete(T_JOBS, Key::Str(id));
        Ok(())
    }

    fn put_dead(&mut self, id: &str, value: &[u8]) -> Result<(), redb::Error> {
        self.dead.insert(id, value)?;
        self.record_put(T_DEAD, Key::Str(id), value);
        Ok(())
    }

    fn put_expiry(&mut self, at: u64, id: &str) -> Result<(), redb::Error> {
        self.expiry.insert((at, id), ())?;
        self.record_put(T_EXPIRY, Key::U64Str(at, id), &[]);
        Ok(())
    }

    fn delete_expiry(&mut self, at: u64, id: &str) -> Result<(), redb::Error> {
        self.expiry.remove((at, id))?;
        self.record_delete(T_EXPIRY, Key::U64Str(at, id));
        Ok(())
    }

    /// Re-applies one logged change (replay runs without a log).
    fn replay(&mut self, mutation: Mutation<'_>) -> Result<(), redb::Error> {
        match mutation {
            Mutation::Put(T_TASKS, Key::Str(id), v) => self.put_task(id, v),
            Mutation::Delete(T_TASKS, Key::Str(id)) => self.delete_task(id),
            Mutation::Put(T_EVENTS, Key::StrU64(id, seq), v) => self.put_event(id, seq, v),
            Mutation::Delete(T_EVENTS, Key::StrU64(id, seq)) => self.delete_event(id, seq),
            Mutation::Put(T_PUSH, Key::StrStr(id, c), v) => self.put_push(id, c, v),
            Mutation::Delete(T_PUSH, Key::StrStr(id, c)) => self.delete_push(id, c).map(drop),
            Mutation::Put(T_JOBS, Key::Str(id), v) => self.put_job(id, v),
            Mutation::Delete(T_JOBS, Key::Str(id)) => self.delete_job(id),
            Mutation::Put(T_DEAD, Key::Str(id), v) => self.put_dead(id, v),
            Mutation::Put(T_EXPIRY, Key::U64Str(at, id), _) => self.put_expiry(at, id),
            Mutation::Delete(T_EXPIRY, Key::U64Str(at, id)) => self.delete_expiry(at, id),
            other => {
                tracing::warn!(?other, "ignoring an unknown write-ahead log change");
                Ok(())
            }
        }
    }
}

/// The embedded store and queue (one object: a task and its job are written together).
pub struct EmbeddedStore {
    db: Arc<Database>,
    ops: mpsc::Sender<Op>,
    ready_tx: async_channel::Sender<Job>,
    ready_rx: async_channel::Receiver<Job>,
    running: AtomicU64,
    closed: AtomicBool,
    kind: &'static str,
}

impl EmbeddedStore {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(make(tx)).map_err(|_| unavailable("writer thread stopped"))?;
        rx.await.map_err(|_| unavailable("writer thread stopped"))?
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>) -> Result<T, StoreError> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        f(&tx).map_err(unavailable)
    }
}

#[async_trait]
impl TaskStore for EmbeddedStore {
    async fn apply(&self, change: Change) -> Result<Applied, StoreError> {
        self.call(|tx| Op::Apply(change, tx)).await
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        let bytes = self.read(|tx| {
            let table = tx.open_table(TASKS)?;
            Ok(table.get(task_id)?.map(|v| v.value().to_vec()))
        })?;
        bytes.map(|b| decode(&b)).transpose()
    }

    async fn events_after(&self, task_id: &str, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        let raw = self.read(|tx| {
            let table = tx.open_table(EVENTS)?;
            let mut out = Vec::new();
            if after < u64::MAX {
                for entry in table.range((task_id, after + 1)..=(task_id, u64::MAX))? {
                    let (k, v) = entry?;
                    out.push((k.value().1, v.value().to_vec()));
                }
            }
            Ok(out)
        })?;
        raw.into_iter().map(|(seq, b)| Ok(LoggedEvent { seq, event: decode(&b)? })).collect()
    }

    async fn set_push_config(&self, task_id: &str, config: PushNotificationConfig) -> Result<(), StoreError> {
        let task_id = task_id.to_string();
        self.call(|tx| Op::SetPush(task_id, config, tx)).await
    }

    async fn push_configs(&self, task_id: &str) -> Result<Vec<PushNotificationConfig>, StoreError> {
        let raw = self.read(|tx| {
            if tx.open_table(TASKS)?.get(task_id)?.is_none() {
                return Ok(None);
            }
            let table = tx.open_table(PUSH)?;
            let mut out = Vec::new();
            for entry in table.range((task_id, "")..)? {
                let (k, v) = entry?;
                if k.value().0 != task_id {
                    break;
                }
                out.push(v.value().to_vec());
            }
            Ok(Some(out))
        })?;
        let raw = raw.ok_or_else(|| StoreError::TaskNotFound(task_id.to_string()))?;
        raw.iter().map(|b| decode(b)).collect()
    }

    async fn delete_push_config(&self, task_id: &str, config_id: &str) -> Result<bool, StoreError> {
        let (task_id, config_id) = (task_id.to_string(), config_id.to_string());
        self.call(|tx| Op::DeletePush(task_id, config_id, tx)).await
    }

    async fn sweep_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.call(|tx| Op::Sweep(now_ms, tx)).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.read(|tx| {
            tx.open_table(TASKS)?;
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}

#[async_trait]
impl TaskQueue for EmbeddedStore {
    async fn next(&self) -> Option<Job> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let job = self.ready_rx.recv().await.ok()?;
        self.running.fetch_add(1, Ordering::Relaxed);
        Some(job)
    }

    async fn retry(&self, mut job: Job, error: String, delay_ms: u64) -> Result<(), StoreError> {
        self.running.fetch_sub(1, Ordering::Relaxed);
        job.attempt += 1;
        job.last_error = Some(error);
        self.call(|tx| Op::Retry(job.clone(), tx)).await?;
        let ready = self.ready_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let _ = ready.send(job).await;
        });
        Ok(())
    }

    async fn discard(&self, job: &Job) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let job = job.clone();
        if let Err(e) = self.call(|tx| Op::Discard(job, tx)).await {
            tracing::error!(error = %e, "cannot discard job");
        }
    }

    async fn dead_letter(&self, job: Job, error: String) -> Result<Applied, StoreError> {
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.call(|tx| Op::DeadLetter(job, error, tx)).await
    }

    async fn recover(&self, max_attempts: u32) -> Result<(usize, usize), StoreError> {
        let raw = self.read(|tx| {
            let table = tx.open_table(JOBS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                out.push(entry?.1.value().to_vec());
            }
            Ok(out)
        })?;
        let (mut requeued, mut dead) = (0, 0);
        for bytes in raw {
            let mut job: Job = decode(&bytes)?;
            // The job was queued or running when the process stopped: that run counts.
            job.attempt += 1;
            if job.attempt > max_attempts {
                self.running.fetch_add(1, Ordering::Relaxed);
                let error = job.last_error.clone().unwrap_or_else(|| "the server stopped while the task ran".into());
                let _ = self.dead_letter(job, error).await;
                dead += 1;
            } else {
                self.call(|tx| Op::Retry(job.clone(), tx)).await?;
                let _ = self.ready_tx.send(job).await;
                requeued += 1;
            }
        }
        Ok((requeued, dead))
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let (jobs, dead) = self.read(|tx| Ok((tx.open_table(JOBS)?.len()?, tx.open_table(DEAD)?.len()?)))?;
        let running = self.running.load(Ordering::Relaxed);
        Ok(QueueStats { pending: jobs.saturating_sub(running), running, dead_letter: dead })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready_rx.close();
    }
}

/// In-process fan-out: one broadcast channel per followed task.
#[derive(Default)]
pub struct LocalBus {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<LoggedEvent>>>>,
}

/// Events a slow subscriber may fall behind before it re-reads the log.
const BUS_CAPACITY: usize = 256;

impl LocalBus {
    fn publish(&self, task_id: &str, seq: u64, event: &StreamEvent) {
        let mut channels = match self.channels.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(sender) = channels.get(task_id) {
            if sender.receiver_count() == 0 {
                channels.remove(task_id);
            } else {
                let _ = sender.send(Arc::new(LoggedEvent { seq, event: event.clone() }));
            }
        }
    }
}

impl EventBus for LocalBus {
    fn subscribe(&self, task_id: &str) -> broadcast::Receiver<Arc<LoggedEvent>> {
        let mut channels = match self.channels.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        channels.retain(|_, s| s.receiver_count() > 0);
        channels.entry(task_id.to_string()).or_insert_with(|| broadcast::channel(BUS_CAPACITY).0).subscribe()
    }

    fn subscriptions(&self) -> usize {
        let channels = match self.channels.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        channels.values().map(|s| s.receiver_count()).sum()
    }
}
