//! Apps (tenants) in memory: each app's record and the agents its configuration names. The
//! `default` app is `config.yaml`; the others live in the store and are reloaded whenever any
//! instance announces a change (and every few seconds, in case a notice was lost).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::agents::AgentRegistry;
use crate::clock::now_ms;
use crate::config::Config;
use crate::store::tenants::{AppRecord, TenantStore, DEFAULT_APP};
use crate::store::StoreError;

/// How often apps are reloaded even without a change notice.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// One app: its record and its agents.
pub struct Tenant {
    pub record: AppRecord,
    pub config: Config,
    pub agents: AgentRegistry,
}

/// Every app, by id. Cheap to clone.
#[derive(Clone)]
pub struct Tenants {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TenantStore>,
    /// This instance's `config.yaml`: the default app's agents.
    default_config: Config,
    apps: RwLock<Arc<HashMap<String, Arc<Tenant>>>>,
    /// Held from reading the apps until they are swapped in, so reloads take effect in the
    /// order they read: one that read before a change cannot swap in after one that read it.
    reloading: tokio::sync::Mutex<()>,
}

impl Tenants {
    /// Records `config.yaml` as the default app (keeping its token generation) and loads every app.
    pub async fn open(store: Arc<dyn TenantStore>, default_config: Config) -> Result<Tenants, StoreError> {
        let config_json = serde_json::to_string(&default_config).unwrap_or_default();
        let stored = store.apps().await?.into_iter().find(|a| a.id == DEFAULT_APP);
        let now = now_ms();
        let record = match stored {
            Some(record) if record.config_json == config_json => None,
            Some(record) => Some(AppRecord { config_json, updated_ms: now, ..record }),
            None => Some(default_record(config_json, now)),
        };
        if let Some(record) = record {
            store.put_app(&record).await?;
        }
        let tenants = Tenants {
            inner: Arc::new(Inner {
                store,
                default_config,
                apps: RwLock::new(Arc::new(HashMap::new())),
                reloading: tokio::sync::Mutex::new(()),
            }),
        };
        tenants.reload().await?;
        Ok(tenants)
    }

    /// The app with this id.
    pub fn get(&self, app_id: &str) -> Option<Arc<Tenant>> {
        self.snapshot().get(app_id).cloned()
    }

    /// Every app: the default app first, then the others in the order they were created.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let mut apps: Vec<Arc<Tenant>> = self.snapshot().values().cloned().collect();
        apps.sort_by_key(|t| (t.record.id != DEFAULT_APP, t.record.created_ms, t.record.id.clone()));
        apps
    }

    /// The store apps live in.
    pub fn store(&self) -> &Arc<dyn TenantStore> {
        &self.inner.store
    }

    fn snapshot(&self) -> Arc<HashMap<String, Arc<Tenant>>> {
        self.inner.apps.read().map(|a| a.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn default_tenant(&self, record: Option<AppRecord>) -> Tenant {
        let config = self.inner.default_config.clone();
        let record = record.unwrap_or_else(|| default_record(serde_json::to_string(&config).unwrap_or_default(), 0));
        Tenant { agents: AgentRegistry::from_config(&config), config, record }
    }

    /// Reads every app from the store and swaps them in.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _reloading = self.inner.reloading.lock().await;
        let records = self.inner.store.apps().await?;
        let mut apps = HashMap::with_capacity(records.len() + 1);
        for record in records {
            let tenant = if record.id == DEFAULT_APP {
                // The default app's agents are this instance's file; the record keeps its tokens.
                self.default_tenant(Some(record))
            } else {
                match Config::parse(&record.config_json) {
                    Ok(config) => Tenant { agents: AgentRegistry::from_config(&config), config, record },
                    Err(e) => {
                        tracing::warn!(app = %record.id, error = %e, "skipping an app whose configuration is invalid");
                        continue;
                    }
                }
            };
            apps.insert(tenant.record.id.clone(), Arc::new(tenant));
        }
        if !apps.contains_key(DEFAULT_APP) {
            apps.insert(DEFAULT_APP.into(), Arc::new(self.default_tenant(None)));
        }
        *self.inner.apps.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(apps);
        Ok(())
    }

    /// Keeps the apps current: reloads on every change notice and every few seconds.
    pub fn watch(&self) {
        let tenants = self.clone();
        let mut changes = self.inner.store.changes();
        tokio::spawn(async move {
            loop {
                let notified = tokio::time::timeout(RELOAD_EVERY, changes.recv()).await;
                if let Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) = notified {
                    return;
                }
                if let Err(e) = tenants.reload().await {
                    tracing::warn!(error = %e, "cannot reload apps");
                }
            }
        });
    }
}

/// The record of the default app (`config.yaml`).
fn default_record(config_json: String, now_ms: u64) -> AppRecord {
    AppRecord {
        id: DEFAULT_APP.into(),
        name: DEFAULT_APP.into(),
        config_json,
        created_ms: now_ms,
        updated_ms: now_ms,
        token_generation: 0,
    }
}
