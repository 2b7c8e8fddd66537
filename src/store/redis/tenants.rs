//! Apps and signing keys on Redis: two hashes (`apps`, `signing-keys`) and a name index, written
//! by scripts that also announce the change on the tenancy channel, so every instance reloads.

use super::connection::RedisConn;
use async_trait::async_trait;
use redis::AsyncCommands;
use tokio::sync::broadcast;

use super::keys::Keys;
use super::{decode, encode, scripts, unavailable};
use crate::store::tenants::{AppRecord, KeyRecord, TenantStore};
use crate::store::StoreError;

/// The Redis tenancy store.
pub struct RedisTenants {
    pub(super) conn: RedisConn,
    pub(super) keys: Keys,
    /// Fed by the bus from the tenancy channel.
    pub(super) changes: broadcast::Sender<()>,
}

#[async_trait]
impl TenantStore for RedisTenants {
    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let values: Vec<Vec<u8>> = self.conn.clone().hvals(self.keys.apps()).await.map_err(unavailable)?;
        values.iter().map(|v| decode(v)).collect()
    }

    async fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let stored: i64 = scripts::PUT_APP
            .on(&self.conn)
            .key(self.keys.apps())
            .key(self.keys.app_names())
            .arg(&app.id)
            .arg(&app.name)
            .arg(encode(app))
            .arg(self.keys.tenancy_channel())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match stored {
            0 => Err(StoreError::Conflict(format!("an app named {} already exists", app.name))),
            _ => Ok(()),
        }
    }

    async fn delete_app(&self, id: &str) -> Result<bool, StoreError> {
        let deleted: i64 = scripts::DELETE_APP
            .on(&self.conn)
            .key(self.keys.apps())
            .key(self.keys.app_names())
            .arg(id)
            .arg(self.keys.tenancy_channel())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(deleted == 1)
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let values: Vec<Vec<u8>> = self.conn.clone().hvals(self.keys.signing_keys()).await.map_err(unavailable)?;
        sorted(values)
    }

    async fn add_key(&self, key: &KeyRecord, only_if_none: bool) -> Result<Vec<KeyRecord>, StoreError> {
        let values: Vec<Vec<u8>> = scripts::ADD_KEY
            .on(&self.conn)
            .key(self.keys.signing_keys())
            .arg(&key.kid)
            .arg(encode(key))
            .arg(if only_if_none { "1" } else { "0" })
            .arg(self.keys.tenancy_channel())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        sorted(values)
    }

    fn changes(&self) -> broadcast::Receiver<()> {
        self.changes.subscribe()
    }
}

fn sorted(values: Vec<Vec<u8>>) -> Result<Vec<KeyRecord>, StoreError> {
    let mut keys = values.iter().map(|v| decode(v)).collect::<Result<Vec<KeyRecord>, _>>()?;
    keys.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.kid.cmp(&b.kid)));
    Ok(keys)
}
