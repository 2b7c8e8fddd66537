//! Who is calling: the admin (bearer secret), an app (an ES256 JWT this server minted), or
//! anyone. Authentication is on when an admin secret is configured; without it every request is
//! anonymous and the default app serves it.
//!
//! Verification pins ES256, checks signature, `exp`/`nbf` (30 s leeway), `iss` and `aud`, then
//! the app's token generation (revocation). A verified token is cached until it expires, so each
//! token costs one signature check; the generation is checked on every request.

pub mod external;
pub mod keys;
mod secret;
mod tokens;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header, Validation};

use crate::clock::now_ms;
use crate::store::tenants::{AppRecord, KeyRecord, TenantStore};
use crate::tenants::Tenants;
use keys::KeyRing;
pub use tokens::Claims;

/// The audience of every token this server mints.
pub const AUDIENCE: &str = "switchyard";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Verified tokens remembered at most (the cache is emptied when full).
const CACHE_LIMIT: usize = 100_000;
/// An unknown key id reloads the keys from the store at most this often.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_millis(250);
/// A valid token of an app unknown here (or of a newer generation) reloads the apps at most
/// this often.
const APP_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// Authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// Bearer secret of the admin API; authentication is on when set.
    pub admin_secret: Option<String>,
    /// `iss` of minted tokens (default: the public URL, else `switchyard`).
    pub issuer: Option<String>,
    /// Lifetime of minted tokens.
    pub token_ttl: Duration,
    /// A PKCS#8 PEM file holding the P-256 signing key to use.
    pub signing_key: Option<PathBuf>,
    /// An OIDC issuer whose tokens are accepted too.
    pub external: Option<external::ExternalIssuer>,
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (or authentication is off).
    Anonymous,
    /// The admin secret.
    Admin,
    /// A valid token of an app.
    App { app: String, subject: String },
}

impl Caller {
    /// The app whose agents serve this caller.
    pub fn app(&self) -> &str {
        match self {
            Caller::App { app, .. } => app,
            _ => crate::store::tenants::DEFAULT_APP,
        }
    }

    /// The user recorded on what this caller creates: a token's subject, else the default user.
    pub fn user(&self) -> &str {
        match self {
            Caller::App { subject, .. } => subject,
            _ => crate::store::sessions::DEFAULT_USER,
        }
    }

    /// Presented valid credentials.
    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Caller::Anonymous)
    }
}

/// Credentials were presented but are not valid. Deliberately without detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized;

#[derive(Clone)]
struct Verified {
    app: String,
    subject: String,
    generation: u64,
    /// Expiry in ms, leeway included.
    expires_ms: u64,
    /// Minted by the external issuer: no token generation applies.
    external: bool,
}

/// Authentication of one deployment.
pub struct Auth {
    admin_secret: Option<Vec<u8>>,
    issuer: String,
    token_ttl: Duration,
    store: Arc<dyn TenantStore>,
    tenants: Tenants,
    keys: RwLock<Arc<KeyRing>>,
    /// Held from reading (or writing) the stored keys until the ring is swapped, so a reload
    /// that read the keys before a rotation cannot swap its older ring in after it.
    key_updates: tokio::sync::Mutex<()>,
    last_key_reload: Mutex<Instant>,
    last_app_reload: Mutex<Instant>,
    cache: Mutex<HashMap<String, Verified>>,
    validation: Validation,
    external: Option<Arc<external::ExternalKeys>>,
}

impl Auth {
    /// Loads (or creates, on a deployment's first start) the signing keys.
    pub async fn open(
        options: &AuthOptions,
        default_issuer: String,
        store: Arc<dyn TenantStore>,
        tenants: Tenants,
    ) -> Result<Arc<Auth>, String> {
        let stored = store.keys().await.map_err(|e| e.to_string())?;
        let records = match &options.signing_key {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
                let key = keys::from_pem(&text).map_err(|e| format!("signing key {}: {e}", path.display()))?;
                if stored.iter().any(|k| k.kid == key.kid) {
                    stored
                } else {
                    store.add_key(&key, false).await.map_err(|e| e.to_string())?
                }
            }
            None if stored.is_empty() => store.add_key(&keys::generate()?, true).await.map_err(|e| e.to_string())?,
            None => stored,
        };
        let issuer = options.issuer.clone().unwrap_or(default_issuer);
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let external = match &options.external {
            Some(issuer) => Some(external::ExternalKeys::start(issuer.clone(), LEEWAY_SECS).await),
            None => None,
        };
        let auth = Arc::new(Auth {
            admin_secret: options.admin_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            issuer,
            token_ttl: options.token_ttl,
            store,
            tenants,
            keys: RwLock::new(Arc::new(KeyRing::new(&records))),
            key_updates: tokio::sync::Mutex::new(()),
            last_key_reload: Mutex::new(Instant::now().checked_sub(KEY_RELOAD_INTERVAL).unwrap_or_else(Instant::now)),
            last_app_reload: Mutex::new(Instant::now().checked_sub(APP_RELOAD_INTERVAL).unwrap_or_else(Instant::now)),
            cache: Mutex::new(HashMap::new()),
            validation,
            external,
        });
        auth.watch_keys();
        Ok(auth)
    }

    /// Authentication is on: an admin secret or an external issuer is configured.
    pub fn enabled(&self) -> bool {
        self.admin_secret.is_some() || self.external.is_some()
    }

    /// The admin API is on.
    pub fn admin_enabled(&self) -> bool {
        self.admin_secret.is_some()
    }

    /// `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public keys as a JWK set.
    pub fn jwks(&self) -> serde_json::Value {
        self.ring().jwks()
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.keys.read().map(|k| k.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The caller of a request, from its `Authorization` header.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, Unauthorized> {
        if !self.enabled() {
            return Ok(Caller::Anonymous);
        }
        let Some(value) = authorization else { return Ok(Caller::Anonymous) };
        let token = bearer(value).ok_or(Unauthorized)?;
        if self.admin_secret.as_ref().is_some_and(|secret| secret::matches(token.as_bytes(), secret)) {
            return Ok(Caller::Admin);
        }
        self.verify(token).await
    }

    /// The request carries the admin secret.
    pub fn is_admin(&self, authorization: Option<&[u8]>) -> bool {
        match (&self.admin_secret, authorization.and_then(bearer)) {
            (Some(secret), Some(token)) => secret::matches(token.as_bytes(), secret),
            _ => false,
        }
    }

    /// An app token's caller, checked against the app's current token generation.
    async fn verify(&self, token: &str) -> Result<Caller, Unauthorized> {
        let now = now_ms();
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(token).filter(|v| v.expires_ms > now).cloned()
        };
        let verified = match cached {
            Some(hit) => hit,
            None => {
                let verified = self.check_signature(token).await?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(token.to_string(), verified.clone());
                verified
            }
        };
        let Verified { app, subject, generation, external, .. } = verified;
        // External tokens have no generation: the app only has to exist.
        let current = |tenants: &Tenants| {
            tenants.get(&app).map(|t| if external { generation } else { t.record.token_generation })
        };
        let mut known = current(&self.tenants);
        if known != Some(generation) && self.may_reload(&self.last_app_reload, APP_RELOAD_INTERVAL) {
            // The app (or its new generation) may have been written a moment ago on another
            // instance, before its notice arrived here.
            if let Err(e) = self.tenants.reload().await {
                tracing::warn!(error = %e, "cannot reload apps");
            }
            known = current(&self.tenants);
        }
        match known {
            Some(needed) if generation >= needed => Ok(Caller::App { app, subject }),
            _ => Err(Unauthorized),
        }
    }

    /// Checks a token's signature and claims, with this server's keys or the external issuer's.
    async fn check_signature(&self, token: &str) -> Result<Verified, Unauthorized> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Unauthorized)?;
        let kid = header.kid.ok_or(Unauthorized)?;
        if header.alg == Algorithm::ES256 {
            if let Some(claims) = self.check_own(token, &kid).await? {
                return Ok(Verified {
                    app: claims.tenant_id,
                    subject: claims.sub,
                    generation: claims.gen,
                    expires_ms: (claims.exp + LEEWAY_SECS) * 1000,
                    external: false,
                });
            }
        }
        match &self.external {
            Some(external) if external.knows(&kid).await => {
                let claims = external.verify(token, &kid, header.alg).ok_or(Unauthorized)?;
                Ok(Verified {
                    app: claims.tenant_id.unwrap_or_else(|| crate::store::tenants::DEFAULT_APP.to_string()),
                    subject: claims.sub,
                    generation: 0,
                    expires_ms: (claims.exp + LEEWAY_SECS) * 1000,
                    external: true,
                })
            }
            _ => Err(Unauthorized),
        }
    }

    /// The claims of a token signed with one of this server's keys; `None` when `kid` is not
    /// one of them.
    async fn check_own(&self, token: &str, kid: &str) -> Result<Option<Claims>, Unauthorized> {
        let mut ring = self.ring();
        if ring.get(kid).is_none() && self.may_reload(&self.last_key_reload, KEY_RELOAD_INTERVAL) {
            // Another instance may have rotated the keys a moment ago.
            self.reload_keys().await;
            ring = self.ring();
        }
        let Some(key) = ring.get(kid) else { return Ok(None) };
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "token refused");
            Unauthorized
        })?;
        if data.claims.sub != data.claims.tenant_id {
            return Err(Unauthorized);
        }
        Ok(Some(data.claims))
    }

    /// Throttles reloads caused by requests, so unknown ids cannot turn into a store read each.
    fn may_reload(&self, last: &Mutex<Instant>, interval: Duration) -> bool {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < interval {
            return false;
        }
        *last = Instant::now();
        true
    }

    async fn reload_keys(&self) {
        let _updating = self.key_updates.lock().await;
        match self.store.keys().await {
            Ok(records) => self.set_keys(&records),
            Err(e) => tracing::warn!(error = %e, "cannot reload signing keys"),
        }
    }

    fn set_keys(&self, records: &[KeyRecord]) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(KeyRing::new(records));
    }

    /// Reloads the keys whenever apps or keys change on any instance.
    fn watch_keys(self: &Arc<Self>) {
        let mut changes = self.store.changes();
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                let Some(auth) = auth.upgrade() else { return };
                auth.reload_keys().await;
            }
        });
    }

    /// A new token for an app, signed with the newest key.
    pub fn mint(&self, app: &AppRecord) -> Result<String, String> {
        let ring = self.ring();
        let key = ring.active().ok_or("no signing key")?;
        let now = now_ms() / 1000;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: app.id.clone(),
            tenant_id: app.id.clone(),
            iat: now,
            nbf: now,
            exp: now + self.token_ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            gen: app.token_generation,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| format!("cannot sign token: {e}"))
    }

    /// Adds a new signing key, which signs from now on; returns its id.
    pub async fn rotate(&self) -> Result<String, String> {
        let key = keys::generate()?;
        let _updating = self.key_updates.lock().await;
        let records = self.store.add_key(&key, false).await.map_err(|e| e.to_string())?;
        self.set_keys(&records);
        Ok(key.kid)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
