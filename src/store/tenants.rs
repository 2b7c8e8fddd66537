//! Tenancy records: apps (tenants with their own agents) and the token signing keys. Few, small
//! and rarely written, so each backend keeps them whole and every instance holds them in
//! memory; a change on any instance is announced so the others reload at once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::StoreError;

/// The app served when a request carries no app token: `config.yaml`.
pub const DEFAULT_APP: &str = "default";

/// The app of records written before apps existed.
pub fn default_app() -> String {
    DEFAULT_APP.to_string()
}

/// An app as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    /// Unique: 1–64 letters, digits, `-`, `_`.
    pub name: String,
    /// The app's agents configuration (the shape of `config.yaml`), as JSON text.
    pub config_json: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Tokens minted before the current generation are refused (token revocation).
    #[serde(default)]
    pub token_generation: u64,
}

/// A token signing key (ES256, P-256) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The private key, PKCS#8 DER, base64.
    pub pkcs8: String,
    pub created_ms: u64,
}

/// Where apps and signing keys live (the same backend as tasks).
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Every app, in no particular order.
    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError>;
    /// Creates or replaces an app. Fails with [`StoreError::Conflict`] when another app has the
    /// same name, and leaves the store unchanged then.
    async fn put_app(&self, app: &AppRecord) -> Result<(), StoreError>;
    /// Removes an app; false when there was none.
    async fn delete_app(&self, id: &str) -> Result<bool, StoreError>;
    /// Every signing key, oldest first.
    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Adds a signing key; with `only_if_none`, only when the store has no key yet (the first
    /// start of a deployment, where several instances may race). Returns every key afterwards.
    async fn add_key(&self, key: &KeyRecord, only_if_none: bool) -> Result<Vec<KeyRecord>, StoreError>;
    /// Notices that apps or keys changed (on any instance, this one included); receivers
    /// reload. A notice is also sent when changes may have been missed (a lost connection).
    fn changes(&self) -> broadcast::Receiver<()>;
}

/// Names of apps: 1–64 letters, digits, `-`, `_` (the same rule as agent names).
pub fn is_valid_app_name(name: &str) -> bool {
    crate::config::is_valid_agent_name(name)
}
