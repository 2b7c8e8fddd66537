//! Deliveries in the embedded store: keyspace `deliveries` (id → Delivery JSON; ids are UUID
//! v7, so key order is creation order) and `delivery_due` (due ms, id → empty) for the pending
//! ones. One process owns the store, so a lock makes taking and saving atomic.

use std::sync::Mutex;

use async_trait::async_trait;
use fjall::{Database, Keyspace, PersistMode};

use super::{decode, encode, unavailable};
use crate::store::deliveries::{id_floor, Delivery, DeliveryState, DeliveryStore};
use crate::store::StoreError;

/// The embedded delivery store.
pub struct EmbeddedDeliveries {
    db: Database,
    records: Keyspace,
    due: Keyspace,
    /// Serializes changes to the due index (taking leases, saving attempts).
    writes: Mutex<()>,
}

fn due_key(at_ms: u64, id: &str) -> Vec<u8> {
    let mut key = at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

impl EmbeddedDeliveries {
    pub(super) fn new(db: Database, records: Keyspace, due: Keyspace) -> Self {
        EmbeddedDeliveries { db, records, due, writes: Mutex::new(()) }
    }

    fn read(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.records.get(id).map_err(unavailable)?.map(|bytes| decode(&bytes)).transpose()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl DeliveryStore for EmbeddedDeliveries {
    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        batch.insert(&self.records, delivery.id.as_str(), encode(delivery));
        batch.insert(&self.due, due_key(delivery.next_ms, &delivery.id), Vec::<u8>::new());
        batch.commit().map_err(unavailable)
    }

    async fn take_due(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let _guard = self.lock();
        let keys: Vec<_> = self
            .due
            .range(..due_key(now_ms + 1, ""))
            .take(limit)
            .map(|item| item.key().map_err(unavailable))
            .collect::<Result<_, _>>()?;
        let mut taken = Vec::with_capacity(keys.len());
        let mut batch = self.db.batch();
        for key in keys {
            batch.remove(&self.due, key.to_vec());
            let id = String::from_utf8_lossy(&key[8..]).into_owned();
            let Some(mut delivery) = self.read(&id)? else { continue };
            if delivery.state != DeliveryState::Pending {
                continue;
            }
            delivery.next_ms = now_ms + lease_ms;
            batch.insert(&self.records, id.as_str(), encode(&delivery));
            batch.insert(&self.due, due_key(delivery.next_ms, &id), Vec::<u8>::new());
            taken.push(delivery);
        }
        batch.commit().map_err(unavailable)?;
        Ok(taken)
    }

    async fn save(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        if let Some(stored) = self.read(&delivery.id)? {
            batch.remove(&self.due, due_key(stored.next_ms, &delivery.id));
        }
        batch.insert(&self.records, delivery.id.as_str(), encode(delivery));
        if delivery.state == DeliveryState::Pending {
            batch.insert(&self.due, due_key(delivery.next_ms, &delivery.id), Vec::<u8>::new());
        }
        batch.commit().map_err(unavailable)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.read(id)
    }

    async fn deliveries(&self, before: Option<&str>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let items = match before {
            Some(before) => self.records.range(..before.to_string()),
            None => self.records.range::<String, _>(..),
        };
        items
            .rev()
            .take(limit)
            .map(|item| {
                let (_, value) = item.into_inner().map_err(unavailable)?;
                decode(&value)
            })
            .collect()
    }

    async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let _guard = self.lock();
        let mut batch = self.db.batch();
        let mut swept = 0;
        for item in self.records.range(..id_floor(cutoff_ms)) {
            let (key, value) = item.into_inner().map_err(unavailable)?;
            let delivery: Delivery = decode(&value)?;
            if delivery.state != DeliveryState::Pending {
                batch.remove(&self.records, key);
                swept += 1;
            }
        }
        batch.commit().map_err(unavailable)?;
        Ok(swept)
    }
}
