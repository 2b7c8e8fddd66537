//! Capture sessions in the embedded store: keyspace `capture_sessions` (id → session JSON) and
//! `capture_events` (id \0 seq → event JSON). A session's counter is the number of its newest
//! event, so recording is one insert. Sessions in use are cached with a lock each: recording
//! counts, inserts and announces under it, so events become visible in number order and a
//! reader never sees a gap that fills later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use fjall::{Database, Keyspace, PersistMode};
use tokio::sync::broadcast;

use super::{decode, encode, keys, unavailable, GroupSync};
use crate::store::capture::{
    expired_grace_ms, CaptureSession, CaptureStore, CaptureUpdate, CapturedEvent, CapturedRequest, LiveCaptures,
    Recording, Updated,
};
use crate::store::StoreError;

/// A cached session; `None` once deleted (a recorder that raced the deletion records nothing).
type Slot = Arc<Mutex<Option<CaptureSession>>>;

/// The embedded capture store.
pub struct EmbeddedCapture {
    db: Database,
    sessions: Keyspace,
    events: Keyspace,
    slots: Mutex<HashMap<String, Slot>>,
    live: LiveCaptures,
    group: Option<Arc<GroupSync>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmbeddedCapture {
    pub(super) fn new(db: Database, sessions: Keyspace, events: Keyspace, group: Option<Arc<GroupSync>>) -> Self {
        EmbeddedCapture {
            db,
            sessions,
            events,
            slots: Mutex::new(HashMap::new()),
            live: LiveCaptures::default(),
            group,
        }
    }

    /// The cached session, loaded on first use. Loading happens under the cache lock, so a
    /// deletion cannot slip between the read and the caching.
    fn slot(&self, id: &str) -> Result<Option<Slot>, StoreError> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(id) {
            return Ok(Some(slot.clone()));
        }
        let Some(session) = self.load(id)? else { return Ok(None) };
        let slot = Arc::new(Mutex::new(Some(session)));
        slots.insert(id.to_string(), slot.clone());
        Ok(Some(slot))
    }

    fn load(&self, id: &str) -> Result<Option<CaptureSession>, StoreError> {
        let Some(bytes) = self.sessions.get(id).map_err(unavailable)? else { return Ok(None) };
        let mut session: CaptureSession = decode(&bytes)?;
        session.request_count = match self.events.prefix(keys::prefix(id)).next_back() {
            Some(item) => keys::event_seq(&item.key().map_err(unavailable)?),
            None => 0,
        };
        Ok(Some(session))
    }

    /// Commits a batch so it survives the process being killed (and, under `--fsync always`,
    /// a power loss) before the caller answers.
    async fn durable(&self) {
        if let Some(group) = &self.group {
            group.wait().await;
        }
    }

    fn remove_events(&self, id: &str) -> Result<(), StoreError> {
        // In batches, so a large claimed session does not build one huge write.
        loop {
            let keys: Vec<_> = self
                .events
                .prefix(keys::prefix(id))
                .take(1024)
                .map(|item| item.key().map_err(unavailable))
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut batch = self.db.batch();
            for key in keys {
                batch.remove(&self.events, key);
            }
            batch.commit().map_err(unavailable)?;
        }
    }

    fn read_events(
        &self,
        range: impl std::ops::RangeBounds<Vec<u8>>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<CapturedEvent>, StoreError> {
        let items = self.events.range(range);
        let items: Box<dyn Iterator<Item = _>> = if newest_first { Box::new(items.rev()) } else { Box::new(items) };
        items
            .take(limit)
            .map(|item| {
                let (_, value) = item.into_inner().map_err(unavailable)?;
                decode(&value)
            })
            .collect()
    }
}

#[async_trait]
impl CaptureStore for EmbeddedCapture {
    async fn create(&self, session: &CaptureSession, _grace_ms: u64) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        batch.insert(&self.sessions, session.id.as_str(), encode(session));
        batch.commit().map_err(unavailable)?;
        self.durable().await;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<CaptureSession>, StoreError> {
        let Some(slot) = self.slot(id)? else { return Ok(None) };
        let session = lock(&slot).clone();
        Ok(session)
    }

    async fn record(&self, id: &str, request: CapturedRequest, now_ms: u64) -> Result<Recording, StoreError> {
        let Some(slot) = self.slot(id)? else { return Ok(Recording::Missing) };
        let recording = {
            let mut guard = lock(&slot);
            let Some(session) = guard.as_mut() else { return Ok(Recording::Missing) };
            if session.expired(now_ms) {
                return Ok(Recording::Expired(session.expires_ms.unwrap_or(now_ms)));
            }
            if session.full() {
                return Ok(Recording::Full(session.request_limit.unwrap_or(0)));
            }
            let event = Arc::new(CapturedEvent {
                seq: session.request_count + 1,
                status: session.response.status_code,
                request,
            });
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            batch.insert(&self.events, keys::event(id, event.seq), encode(&*event));
            batch.commit().map_err(unavailable)?;
            session.request_count = event.seq;
            self.live.publish(id, event.clone());
            Recording::Recorded { event, session: session.clone() }
        };
        self.durable().await;
        Ok(recording)
    }

    async fn events_before(&self, id: &str, before: u64, limit: usize) -> Result<Vec<CapturedEvent>, StoreError> {
        self.read_events(keys::event(id, 0)..keys::event(id, before), true, limit)
    }

    async fn events_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<CapturedEvent>, StoreError> {
        match after.checked_add(1) {
            Some(from) => self.read_events(keys::event(id, from)..=keys::event(id, u64::MAX), false, limit),
            None => Ok(Vec::new()),
        }
    }

    async fn update(&self, id: &str, update: CaptureUpdate, now_ms: u64) -> Result<Updated, StoreError> {
        let Some(slot) = self.slot(id)? else { return Ok(Updated::Missing) };
        let updated = {
            let mut guard = lock(&slot);
            let Some(session) = guard.as_mut() else { return Ok(Updated::Missing) };
            if session.expired(now_ms) {
                return Ok(Updated::Expired(session.expires_ms.unwrap_or(now_ms)));
            }
            let mut changed = session.clone();
            match update {
                CaptureUpdate::Response(response) => changed.response = response,
                CaptureUpdate::Forwarding { url, secret } => {
                    changed.forward_url = url;
                    changed.forward_secret = Some(secret);
                }
                CaptureUpdate::Claim(app) => match &changed.app {
                    Some(owner) if *owner != app => return Ok(Updated::ClaimedByOther(owner.clone())),
                    _ => {
                        changed.app = Some(app);
                        changed.expires_ms = None;
                        changed.request_limit = None;
                    }
                },
            }
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            batch.insert(&self.sessions, id, encode(&changed));
            batch.commit().map_err(unavailable)?;
            *session = changed.clone();
            Updated::Done(changed)
        };
        self.durable().await;
        Ok(updated)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let Some(slot) = self.slot(id)? else { return Ok(false) };
        {
            let mut guard = lock(&slot);
            if guard.take().is_none() {
                return Ok(false);
            }
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            batch.remove(&self.sessions, id);
            batch.commit().map_err(unavailable)?;
        }
        lock(&self.slots).remove(id);
        self.live.close(id);
        self.remove_events(id)?;
        self.durable().await;
        Ok(true)
    }

    async fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        for item in self.sessions.iter() {
            let (_, value) = item.into_inner().map_err(unavailable)?;
            let session: CaptureSession = decode(&value)?;
            if let Some(at) = session.expires_ms.filter(|at| *at <= now_ms) {
                expired.push((session.id, at));
            }
        }
        let mut purged = 0;
        for (id, expired_at) in expired {
            let Some(slot) = self.slot(&id)? else { continue };
            let forget = {
                let mut guard = lock(&slot);
                // Claimed since the scan: it lives on.
                if !guard.as_ref().is_some_and(|s| s.expired(now_ms)) {
                    continue;
                }
                let ttl_ms = guard.as_ref().map_or(0, |s| expired_at.saturating_sub(s.created_ms));
                let forget = expired_at + expired_grace_ms(ttl_ms) <= now_ms;
                if forget {
                    guard.take();
                    self.sessions.remove(id.as_str()).map_err(unavailable)?;
                }
                forget
            };
            if forget {
                lock(&self.slots).remove(&id);
            }
            // Expired sessions record nothing more, so their events can go without the lock.
            if self.events.prefix(keys::prefix(&id)).next().is_some() {
                self.remove_events(&id)?;
                purged += 1;
            }
            self.live.close(&id);
        }
        Ok(purged)
    }

    async fn follow(&self, id: &str) -> Result<broadcast::Receiver<Arc<CapturedEvent>>, StoreError> {
        Ok(self.live.subscribe(id))
    }
}
