//! Apps and signing keys in the embedded store: one keyspace, `app/{id}` and `key/{kid}`.
//! Writes are serialized by one lock so an app name stays unique.

use std::sync::Mutex;

use async_trait::async_trait;
use fjall::{Database, Keyspace, PersistMode};
use tokio::sync::broadcast;

use super::{decode, encode, unavailable};
use crate::store::tenants::{AppRecord, KeyRecord, TenantStore};
use crate::store::StoreError;

/// The embedded tenancy store.
pub struct EmbeddedTenants {
    db: Database,
    records: Keyspace,
    writes: Mutex<()>,
    changes: broadcast::Sender<()>,
}

impl EmbeddedTenants {
    pub(super) fn new(db: Database, records: Keyspace) -> EmbeddedTenants {
        EmbeddedTenants { db, records, writes: Mutex::new(()), changes: broadcast::channel(16).0 }
    }

    fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.records
            .prefix(prefix)
            .map(|item| {
                let (_, value) = item.into_inner().map_err(unavailable)?;
                decode(&value)
            })
            .collect()
    }

    fn write<T>(&self, work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _guard = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let result = work()?;
        // Rare and precious (a lost key invalidates every token it signed): fsync at once.
        self.db.persist(PersistMode::SyncAll).map_err(unavailable)?;
        let _ = self.changes.send(());
        Ok(result)
    }
}

#[async_trait]
impl TenantStore for EmbeddedTenants {
    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.scan("app/")
    }

    async fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.write(|| {
            let apps: Vec<AppRecord> = self.scan("app/")?;
            if apps.iter().any(|other| other.name == app.name && other.id != app.id) {
                return Err(StoreError::Conflict(format!("an app named {} already exists", app.name)));
            }
            self.records.insert(format!("app/{}", app.id), encode(app)).map_err(unavailable)
        })
    }

    async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|| {
            let key = format!("app/{id}");
            let existed = self.records.get(&key).map_err(unavailable)?.is_some();
            self.records.remove(key).map_err(unavailable)?;
            Ok(existed)
        })
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut keys: Vec<KeyRecord> = self.scan("key/")?;
        keys.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.kid.cmp(&b.kid)));
        Ok(keys)
    }

    async fn add_key(&self, key: &KeyRecord, only_if_none: bool) -> Result<Vec<KeyRecord>, StoreError> {
        self.write(|| {
            let existing: Vec<KeyRecord> = self.scan("key/")?;
            if !only_if_none || existing.is_empty() {
                self.records.insert(format!("key/{}", key.kid), encode(key)).map_err(unavailable)?;
            }
            Ok(())
        })?;
        self.keys().await
    }

    fn changes(&self) -> broadcast::Receiver<()> {
        self.changes.subscribe()
    }
}
