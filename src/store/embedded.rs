//! The embedded backend: a single redb file (or memory) plus an in-process queue and bus.
//!
//! Why redb: pure Rust, one file, ACID transactions with copy-on-write B-trees (a crash never
//! leaves a torn write), and the fastest reads of the embedded stores measured here. Writes go
//! through one writer thread that *group-commits*: it drains every pending change into one
//! transaction, so concurrent requests share one fsync. Changes a client is answered about
//! synchronously (create, continue, cancel, final states, push configs) are committed with
//! `Durability::Immediate` (fsync) before the caller hears back; intermediate progress (working,
//! artifact chunks) is committed without fsync and becomes durable with the next synced commit.
//! After each commit the writer publishes the batch's events on the bus, in order, and hands
//! newly queued jobs to the workers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

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

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const PUSH: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("push_configs");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead_letters");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

/// Most changes one group commit takes.
const MAX_BATCH: usize = 512;

/// Opens the embedded backend in `data_dir` (`:memory:` for a throwaway in-memory store).
pub fn open(data_dir: &str, task_ttl: Duration) -> Result<Backend, StoreError> {
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
    {
        // Create every table up front so readers never see a missing table.
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(TASKS).map_err(unavailable)?;
        tx.open_table(EVENTS).map_err(unavailable)?;
        tx.open_table(PUSH).map_err(unavailable)?;
        tx.open_table(JOBS).map_err(unavailable)?;
        tx.open_table(DEAD).map_err(unavailable)?;
        tx.open_table(EXPIRY).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
    }
    let bus = Arc::new(LocalBus::default());
    let (ready_tx, ready_rx) = async_channel::unbounded();
    let (ops_tx, ops_rx) = mpsc::channel::<Op>();
    let writer =
        Writer { db: db.clone(), bus: bus.clone(), ready: ready_tx.clone(), task_ttl_ms: task_ttl.as_millis() as u64 };
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

impl Op {
    fn needs_sync(&self) -> bool {
        match self {
            Op::Apply(change, _) => change.needs_sync(),
            Op::Sweep(..) => false,
            _ => true,
        }
    }
}

/// What to do once a batch is committed.
enum Done {
    Apply(oneshot::Sender<Result<Applied, StoreError>>, Result<Applied, StoreError>, Option<Job>),
    Unit(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Bool(oneshot::Sender<Result<bool, StoreError>>, Result<bool, StoreError>),
    Count(oneshot::Sender<Result<usize, StoreError>>, Result<usize, StoreError>),
}

struct Writer {
    db: Arc<Database>,
    bus: Arc<LocalBus>,
    ready: async_channel::Sender<Job>,
    task_ttl_ms: u64,
}

impl Writer {
    fn run(self, ops: mpsc::Receiver<Op>) {
        while let Ok(first) = ops.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&self, batch: Vec<Op>) {
        let sync = batch.iter().any(Op::needs_sync);
        let mut done = Vec::with_capacity(batch.len());
        let result = (|| -> Result<(), redb::Error> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(if sync { Durability::Immediate } else { Durability::None });
            {
                let mut tables = Tables {
                    tasks: tx.open_table(TASKS)?,
                    events: tx.open_table(EVENTS)?,
                    push: tx.open_table(PUSH)?,
                    jobs: tx.open_table(JOBS)?,
                    dead: tx.open_table(DEAD)?,
                    expiry: tx.open_table(EXPIRY)?,
                };
                for op in batch {
                    done.push(self.execute(&mut tables, op)?);
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            // The whole batch is rolled back: every caller hears about it.
            let err = StoreError::Unavailable(e.to_string());
            tracing::error!(error = %e, "store commit failed");
            for d in done {
                match d {
                    Done::Apply(tx, _, _) => drop(tx.send(Err(err.clone()))),
                    Done::Unit(tx, _) => drop(tx.send(Err(err.clone()))),
                    Done::Bool(tx, _) => drop(tx.send(Err(err.clone()))),
                    Done::Count(tx, _) => drop(tx.send(Err(err.clone()))),
                }
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
                    t.push.insert((task_id.as_str(), id.as_str()), encode(&config).as_slice())?;
                    Ok(())
                };
                Done::Unit(reply, r)
            }
            Op::DeletePush(task_id, config_id, reply) => {
                let r = if t.tasks.get(task_id.as_str())?.is_none() {
                    Err(StoreError::TaskNotFound(task_id))
                } else {
                    Ok(t.push.remove((task_id.as_str(), config_id.as_str()))?.is_some())
                };
                Done::Bool(reply, r)
            }
            Op::Retry(job, reply) => {
                t.jobs.insert(job.id.as_str(), encode(&job).as_slice())?;
                Done::Unit(reply, Ok(()))
            }
            Op::Discard(job, reply) => {
                t.jobs.remove(job.id.as_str())?;
                Done::Unit(reply, Ok(()))
            }
            Op::DeadLetter(job, error, reply) => {
                t.jobs.remove(job.id.as_str())?;
                let letter = DeadLetter { job: job.clone(), error: error.clone(), failed_ms: now_ms() };
                t.dead.insert(job.id.as_str(), encode(&letter).as_slice())?;
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
                    t.expiry.remove((*at, id.as_str()))?;
                    t.tasks.remove(id.as_str())?;
                    remove_prefix_events(&mut t.events, id)?;
                    let keys: Vec<String> = t
                        .push
                        .range((id.as_str(), "")..)?
                        .map_while(|e| e.ok())
                        .take_while(|(k, _)| k.value().0 == id.as_str())
                        .map(|(k, _)| k.value().1.to_string())
                        .collect();
                    for k in keys {
                        t.push.remove((id.as_str(), k.as_str()))?;
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
        t.tasks.insert(task_id.as_str(), encode(&stored).as_slice())?;
        if let Some((from, to)) = effects.drop_events {
            for seq in from + 1..=to {
                t.events.remove((task_id.as_str(), seq))?;
            }
        }
        t.events.insert((task_id.as_str(), stored.seq), encode(&event).as_slice())?;
        if let Some(job) = &effects.enqueue {
            t.jobs.insert(job.id.as_str(), encode(job).as_slice())?;
        }
        if let Some(job_id) = &effects.ack {
            t.jobs.remove(job_id.as_str())?;
        }
        if effects.terminal {
            t.expiry.insert((now_ms() + self.task_ttl_ms, task_id.as_str()), ())?;
        }
        if let Some(config) = &effects.push_config {
            let id = config.id.as_deref().unwrap_or(task_id.as_str());
            t.push.insert((task_id.as_str(), id), encode(config).as_slice())?;
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

fn remove_prefix_events(events: &mut redb::Table<(&str, u64), &[u8]>, id: &str) -> Result<(), redb::Error> {
    let seqs: Vec<u64> =
        events.range((id, 0u64)..=(id, u64::MAX))?.map_while(|e| e.ok()).map(|(k, _)| k.value().1).collect();
    for seq in seqs {
        events.remove((id, seq))?;
    }
    Ok(())
}

struct Tables<'tx> {
    tasks: redb::Table<'tx, &'static str, &'static [u8]>,
    events: redb::Table<'tx, (&'static str, u64), &'static [u8]>,
    push: redb::Table<'tx, (&'static str, &'static str), &'static [u8]>,
    jobs: redb::Table<'tx, &'static str, &'static [u8]>,
    dead: redb::Table<'tx, &'static str, &'static [u8]>,
    expiry: redb::Table<'tx, (u64, &'static str), ()>,
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
