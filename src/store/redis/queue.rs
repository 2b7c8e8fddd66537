//! The queue on a Redis stream and its background loops: the reader (XREADGROUP on a
//! connection of its own, so blocking reads never delay other commands), the lease keeper
//! (resets the idle time of entries this instance's workers hold), the reaper (XAUTOCLAIM of
//! entries idle past the visibility timeout: their worker died) and the retry mover.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{decode, encode, scripts, unavailable, RedisBackend, Shared};
use crate::clock::now_ms;
use crate::store::{dead_letter_change, Applied, DeadLetter, Job, Outcomes, QueueStats, StoreError, TaskQueue};

/// Creates the consumer group (and the stream) unless it exists.
pub(super) async fn create_group(shared: &Shared) -> Result<(), StoreError> {
    let created: redis::RedisResult<()> =
        shared.conn().xgroup_create_mkstream(shared.keys.queue(), shared.keys.group(), "0").await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) if e.code() == Some("MOVED") && !shared.conn.is_cluster() => Err(StoreError::Unavailable(format!(
            "{} is a node of a Redis Cluster ({e}): pass --redis-cluster, or list several nodes in --redis-url",
            shared.deployment.describe()
        ))),
        Err(e) => Err(unavailable(e)),
    }
}

/// Starts the background loops; they end when the queue closes.
pub(super) fn start(shared: &Arc<Shared>) {
    tokio::spawn(read_jobs(shared.clone()));
    tokio::spawn(keep_leases(shared.clone()));
    tokio::spawn(reap(shared.clone()));
    tokio::spawn(move_due_retries(shared.clone()));
}

/// Reads new entries for the workers waiting in `next`, never more than they can take, so
/// other instances get the rest.
async fn read_jobs(shared: Arc<Shared>) {
    let mut conn: Option<super::connection::RedisConn> = None;
    let mut failing = false;
    while !shared.closed.load(Ordering::Acquire) {
        let wanted = shared.waiting.load(Ordering::Acquire).saturating_sub(shared.ready.1.len());
        if wanted == 0 {
            let _ = tokio::time::timeout(Duration::from_millis(500), shared.wanted.notified()).await;
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                // A connection of its own: a blocking read legitimately waits for up to BLOCK.
                match shared.deployment.connect_blocking(Duration::from_millis(READ_BLOCK_MS as u64)).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "queue reader cannot connect to Redis; retrying");
                            failing = true;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        };
        let options = redis::streams::StreamReadOptions::default()
            .group(shared.keys.group(), &shared.consumer)
            .count(wanted)
            .block(READ_BLOCK_MS);
        let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> = tokio::time::timeout(
            Duration::from_millis(READ_BLOCK_MS as u64) + shared.options.command_timeout,
            c.xread_options(&[shared.keys.queue()], &[">"], &options),
        )
        .await
        .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "XREADGROUP timed out"))));
        let reply = match read {
            Ok(reply) => {
                if failing {
                    tracing::info!("queue reader reconnected to Redis");
                    failing = false;
                }
                reply
            }
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    // The stream was deleted (FLUSHALL, a fresh Redis): recreate the group.
                    let _ = create_group(&shared).await;
                } else if !failing {
                    tracing::warn!(error = %e, "queue read failed; retrying");
                    failing = true;
                }
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let bytes: Vec<u8> = entry.get("job").unwrap_or_default();
            match decode::<Job>(&bytes) {
                Ok(job) => {
                    shared.lease(&job.id, Some(entry.id.clone()));
                    let _ = shared.ready.0.send(job).await;
                }
                Err(e) => {
                    tracing::error!(entry = entry.id, error = %e, "dropping an unreadable queue entry");
                    let _: redis::RedisResult<()> = redis::pipe()
                        .xack(shared.keys.queue(), shared.keys.group(), &[&entry.id])
                        .xdel(shared.keys.queue(), &[&entry.id])
                        .query_async(&mut shared.conn())
                        .await;
                }
            }
        }
    }
}

/// How long one XREADGROUP waits for new entries.
const READ_BLOCK_MS: usize = 1000;

/// Resets the idle time of the entries this instance's workers hold, so the reapers of other
/// instances leave them alone while the turn runs.
async fn keep_leases(shared: Arc<Shared>) {
    let every = (shared.options.visibility_timeout / 3).max(Duration::from_millis(50));
    while !shared.closed.load(Ordering::Acquire) {
        tokio::time::sleep(every).await;
        // Turns kept back here have no entry to renew.
        let entries: Vec<String> = shared
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|entry| !entry.is_empty())
            .cloned()
            .collect();
        for chunk in entries.chunks(500) {
            let lost: redis::RedisResult<Vec<String>> = scripts::RENEW_LEASES
                .key(shared.keys.queue())
                .arg(shared.keys.group())
                .arg(&shared.consumer)
                .arg(chunk)
                .invoke_async(&mut shared.conn())
                .await;
            match lost {
                Ok(lost) => forget_lost_leases(&shared, &lost),
                Err(e) => tracing::warn!(error = %e, "cannot renew queue leases"),
            }
        }
    }
}

/// Drops the leases of entries another instance's reaper took over while this instance was
/// silent: this instance no longer renews them, and its stale turn is refused at its next
/// write (see [`crate::store::Turn`]).
fn forget_lost_leases(shared: &Shared, lost: &[String]) {
    if lost.is_empty() {
        return;
    }
    let mut leases = shared.leases.lock().unwrap_or_else(|p| p.into_inner());
    leases.retain(|job_id, entry| {
        let keep = !lost.contains(entry);
        if !keep {
            tracing::warn!(job_id, entry, "lost a queue lease to another instance");
        }
        keep
    });
}

/// Takes over entries whose worker went silent (its instance died or lost Redis for longer
/// than the visibility timeout): the attempt is counted, and past the last one the job is
/// dead-lettered.
async fn reap(shared: Arc<Shared>) {
    let every = (shared.options.visibility_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    while !shared.closed.load(Ordering::Acquire) {
        tokio::time::sleep(every).await;
        if let Err(e) = reap_once(&shared).await {
            tracing::debug!(error = %e, "queue reaper pass failed");
        }
    }
}

/// One reaper pass; returns (requeued here, dead-lettered).
pub(super) async fn reap_once(shared: &Arc<Shared>) -> Result<(usize, usize), StoreError> {
    let (mut requeued, mut dead) = (0, 0);
    let mut cursor = "0-0".to_string();
    let idle = shared.options.visibility_timeout.as_millis() as usize;
    loop {
        let reply: redis::streams::StreamAutoClaimReply = shared
            .conn()
            .xautoclaim_options(
                shared.keys.queue(),
                shared.keys.group(),
                &shared.consumer,
                idle,
                &cursor,
                redis::streams::StreamAutoClaimOptions::default().count(100),
            )
            .await
            .map_err(unavailable)?;
        for entry in &reply.claimed {
            let bytes: Vec<u8> = entry.get("job").unwrap_or_default();
            let Ok(job) = decode::<Job>(&bytes) else {
                discard_entry(shared, "", &entry.id).await?;
                continue;
            };
            // The latest state of the job (a retry may have counted attempts since it was queued).
            let latest: Option<Vec<u8>> = shared.conn().hget(shared.keys.jobs(), &job.id).await.map_err(unavailable)?;
            let Some(latest) = latest else {
                // Finished or canceled meanwhile: only the entry was left.
                discard_entry(shared, &job.id, &entry.id).await?;
                continue;
            };
            let mut job: Job = decode(&latest)?;
            let reason = "the instance running the task stopped responding";
            tracing::warn!(task_id = job.task_id, attempt = job.attempt, "reclaimed a job whose worker went silent");
            shared.lease(&job.id, Some(entry.id.clone()));
            if job.attempt >= shared.max_attempts.load(Ordering::Acquire) {
                let error = job.last_error.clone().unwrap_or_else(|| reason.to_string());
                dead_letter(shared, job, error).await?;
                dead += 1;
                continue;
            }
            job.attempt += 1;
            let kept: i64 = scripts::RECLAIM
                .key(shared.keys.jobs())
                .key(shared.keys.job_entries())
                .arg(&job.id)
                .arg(encode(&job))
                .arg(&entry.id)
                .invoke_async(&mut shared.conn())
                .await
                .map_err(unavailable)?;
            if kept == 0 {
                shared.lease(&job.id, None);
                discard_entry(shared, &job.id, &entry.id).await?;
                continue;
            }
            let _ = shared.ready.0.send(job).await;
            requeued += 1;
        }
        if reply.next_stream_id == "0-0" || reply.claimed.is_empty() {
            return Ok((requeued, dead));
        }
        cursor = reply.next_stream_id;
    }
}

async fn discard_entry(shared: &Shared, job_id: &str, entry: &str) -> Result<(), StoreError> {
    let k = &shared.keys;
    let _: i64 = scripts::DISCARD
        .key(k.queue())
        .key(k.jobs())
        .key(k.job_entries())
        .key(k.delayed())
        .arg(job_id)
        .arg(entry)
        .arg(k.group())
        .invoke_async(&mut shared.conn())
        .await
        .map_err(unavailable)?;
    if !job_id.is_empty() {
        shared.lease(job_id, None);
    }
    Ok(())
}

/// Moves retries that are due onto the queue (any instance may move any retry).
async fn move_due_retries(shared: Arc<Shared>) {
    while !shared.closed.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let k = &shared.keys;
        let moved: redis::RedisResult<i64> = scripts::MOVE_DUE
            .key(k.delayed())
            .key(k.jobs())
            .key(k.job_entries())
            .key(k.queue())
            .arg(now_ms())
            .arg(100)
            .invoke_async(&mut shared.conn())
            .await;
        if let Err(e) = moved {
            tracing::debug!(error = %e, "cannot move due retries");
        }
    }
}

async fn dead_letter(shared: &Arc<Shared>, job: Job, error: String) -> Result<Applied, StoreError> {
    let letter = DeadLetter { job: job.clone(), error: error.clone(), failed_ms: now_ms() };
    let change = dead_letter_change(&job, &error);
    let applied = shared.apply(change, Some(&letter)).await;
    match &applied {
        Ok(_) => {}
        Err(StoreError::TaskNotFound(_) | StoreError::TaskTerminal { .. }) => {
            // Nothing left to fail: just forget the job.
            let entry = shared.leased_entry(&job.id).unwrap_or_default();
            discard_entry(shared, &job.id, &entry).await?;
        }
        // Redis is unreachable: stop renewing the lease so the reaper tries again later.
        Err(_) => shared.lease(&job.id, None),
    }
    applied
}

#[async_trait]
impl TaskQueue for RedisBackend {
    async fn next(&self) -> Option<Job> {
        let s = &self.0;
        if s.closed.load(Ordering::Acquire) {
            return None;
        }
        s.waiting.fetch_add(1, Ordering::AcqRel);
        s.wanted.notify_one();
        let job = s.ready.1.recv().await.ok();
        s.waiting.fetch_sub(1, Ordering::AcqRel);
        job
    }

    async fn retry(&self, mut job: Job, error: String, delay_ms: u64) -> Result<(), StoreError> {
        let s = &self.0;
        if s.leased_entry(&job.id).is_none() {
            // Another instance took the job over; its attempt decides what happens next.
            return Ok(());
        }
        // Let go of the lease first: if Redis cannot take the retry now, the entry is no longer
        // renewed and the reaper retries it once Redis is back.
        s.lease(&job.id, None);
        job.attempt += 1;
        job.last_error = Some(error);
        if s.write_kept_back(&job.task_id, &job, Some(now_ms() + delay_ms)).await? {
            return Ok(());
        }
        let k = &s.keys;
        let _: i64 = scripts::RETRY
            .key(k.queue())
            .key(k.jobs())
            .key(k.job_entries())
            .key(k.delayed())
            .arg(&job.id)
            .arg(encode(&job))
            .arg(now_ms() + delay_ms)
            .arg(k.group())
            .invoke_async(&mut s.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, job: &Job) {
        self.0.lease(&job.id, None);
    }

    async fn discard(&self, job: &Job) {
        // A job another instance took over is not this instance's to drop.
        let Some(entry) = self.0.leased_entry(&job.id) else { return };
        self.0.lease(&job.id, None);
        if let Err(e) = discard_entry(&self.0, &job.id, &entry).await {
            tracing::warn!(error = %e, job_id = job.id, "cannot discard job; the reaper will");
        }
    }

    async fn dead_letter(&self, job: Job, error: String) -> Result<Applied, StoreError> {
        if self.0.leased_entry(&job.id).is_none() {
            return Err(StoreError::Superseded(format!("job {} was taken over by another instance", job.id)));
        }
        dead_letter(&self.0, job, error).await
    }

    async fn recover(&self, max_attempts: u32) -> Result<(usize, usize), StoreError> {
        self.0.max_attempts.store(max_attempts, Ordering::Release);
        // Jobs of instances that died are taken over once their visibility timeout passes; this
        // pass takes those that are already due.
        reap_once(&self.0).await
    }

    async fn hand_back(&self) {
        let s = &self.0;
        for (task_id, mut job) in s.kept_back() {
            job.attempt += 1;
            job.last_error = Some("the instance running the task shut down".into());
            s.lease(&job.id, None);
            match s.write_kept_back(&task_id, &job, None).await {
                Ok(_) => tracing::info!(task_id, "queued a turn kept back here for another run"),
                Err(e) => tracing::warn!(task_id, error = %e, "cannot queue a turn kept back here"),
            }
        }
        let held: Vec<String> = s.leases.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for job_id in held {
            let latest: redis::RedisResult<Option<Vec<u8>>> = s.conn().hget(s.keys.jobs(), &job_id).await;
            let job = match latest.map_err(unavailable).and_then(|j| j.map(|j| decode::<Job>(&j)).transpose()) {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(job_id, error = %e, "cannot hand a job back; another instance takes it after the visibility timeout");
                    continue;
                }
            };
            let error = "the instance running the task shut down".to_string();
            match self.retry(job, error, 0).await {
                Ok(()) => tracing::info!(job_id, "handed a running job back to the queue"),
                Err(e) => tracing::warn!(job_id, error = %e, "cannot hand a job back"),
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let k = &self.0.keys;
        let (jobs, running, dead, oldest, counters): (u64, u64, u64, String, HashMap<String, u64>) = scripts::STATS
            .key(k.queue())
            .key(k.jobs())
            .key(k.dead_letters())
            .key(k.stats())
            .arg(k.group())
            .invoke_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
        let outcomes = Outcomes {
            completed: counter("completed"),
            failed: counter("failed"),
            canceled: counter("canceled"),
            processed: counter("processed"),
            processing_ms: counter("processing_ms"),
        };
        // An entry id starts with the time it was queued.
        let oldest_ms = oldest.split('-').next().and_then(|ms| ms.parse::<u64>().ok());
        // Turns kept back here are not in Redis yet: they count as running (this instance's only).
        let kept_back = self.0.kept_back().len() as u64;
        Ok(QueueStats::from_counts(jobs + kept_back, running + kept_back, dead, oldest_ms, &outcomes))
    }

    async fn dead_letters(&self, limit: usize) -> Result<(Vec<DeadLetter>, u64), StoreError> {
        let k = &self.0.keys;
        let (entries, total): (redis::streams::StreamRangeReply, u64) = redis::pipe()
            .xrevrange_count(k.dead_letters(), "+", "-", limit)
            .xlen(k.dead_letters())
            .query_async(&mut self.0.conn())
            .await
            .map_err(unavailable)?;
        let letters = entries
            .ids
            .iter()
            .map(|entry| decode(&entry.get::<Vec<u8>>("letter").unwrap_or_default()))
            .collect::<Result<Vec<DeadLetter>, _>>()?;
        Ok((letters, total))
    }

    async fn requeue_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let k = &self.0.keys;
        let entry: Option<String> = self.0.conn().hget(k.dead_letter_index(), id).await.map_err(unavailable)?;
        let Some(entry) = entry else { return Ok(false) };
        let found: redis::streams::StreamRangeReply =
            self.0.conn().xrange(k.dead_letters(), &entry, &entry).await.map_err(unavailable)?;
        let Some(bytes) = found.ids.first().and_then(|e| e.get::<Vec<u8>>("letter")) else { return Ok(false) };
        let letter: DeadLetter = decode(&bytes)?;
        self.0.apply(crate::store::requeue_change(&letter), None).await?;
        Ok(true)
    }

    fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.1.close();
    }
}
