//! Tokens of an external OIDC issuer (`--auth-jwks-url`, `--auth-issuer`, `--auth-audience`),
//! accepted beside the server's own. The issuer's JWKS is fetched at start, every 10 minutes,
//! and when a token names a key id not seen yet (at most every 10 s). Only asymmetric keys are
//! used, and each key verifies only the algorithm it is published for: a token cannot choose
//! its own algorithm (no `none`, no HMAC keyed with public material).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Where an external issuer's keys are and what its tokens must say.
#[derive(Debug, Clone)]
pub struct ExternalIssuer {
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
}

/// The claims used from an external token.
#[derive(Debug, Deserialize)]
pub struct ExternalClaims {
    pub sub: String,
    pub exp: u64,
    /// The app to serve the caller (the default app when absent).
    #[serde(default)]
    pub tenant_id: Option<String>,
}

const REFRESH_EVERY: Duration = Duration::from_secs(600);
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(10);

struct Key {
    kid: String,
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// The keys of one external issuer.
pub struct ExternalKeys {
    issuer: ExternalIssuer,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<Key>>>,
    last_fetch: Mutex<Option<Instant>>,
    leeway: u64,
}

impl ExternalKeys {
    /// Fetches the issuer's keys (a failure is logged and retried later, so a provider that is
    /// briefly away does not stop the server) and keeps them fresh.
    pub async fn start(issuer: ExternalIssuer, leeway: u64) -> Arc<ExternalKeys> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        let keys = Arc::new(ExternalKeys {
            issuer,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: Mutex::new(None),
            leeway,
        });
        keys.refresh().await;
        let weak = Arc::downgrade(&keys);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(keys) = weak.upgrade() else { return };
                keys.refresh().await;
            }
        });
        keys
    }

    async fn refresh(&self) {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let url = &self.issuer.jwks_url;
        let fetched = async {
            let response = self.client.get(url).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            response.json::<JwkSet>().await.map_err(|e| format!("not a JWK set: {e}"))
        };
        match fetched.await {
            Ok(set) => {
                let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
                tracing::info!(url, keys = keys.len(), "loaded the external issuer's keys");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
            }
            Err(e) => tracing::warn!(url, error = %e, "cannot fetch the external issuer's keys"),
        }
    }

    /// A key of this issuer has this id.
    pub async fn knows(&self, kid: &str) -> bool {
        if self.current().iter().any(|k| k.kid == kid) {
            return true;
        }
        let due = self
            .last_fetch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= UNKNOWN_KID_REFRESH);
        if due {
            self.refresh().await;
        }
        self.current().iter().any(|k| k.kid == kid)
    }

    fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The claims of a token signed by key `kid` with the algorithm that key is for.
    pub fn verify(&self, token: &str, kid: &str, alg: Algorithm) -> Option<ExternalClaims> {
        let keys = self.current();
        let key = keys.iter().find(|k| k.kid == kid && k.algorithm == alg)?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway;
        validation.set_issuer(&[&self.issuer.issuer]);
        validation.set_audience(&[&self.issuer.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<ExternalClaims>(token, &key.decoding, &validation).ok().map(|d| d.claims)
    }
}

/// A published key this server can use: asymmetric, with an id, and the algorithm it verifies
/// (as published, or implied by its curve or type).
fn usable(jwk: &Jwk) -> Option<Key> {
    let kid = jwk.common.key_id.clone()?;
    let published = jwk.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok());
    let algorithm = match (&jwk.algorithm, published) {
        (AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_), _) => return None,
        (_, Some(alg)) => alg,
        (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
        _ => return None,
    };
    if matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { kid, algorithm, decoding })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_keys_are_used_for_their_algorithm_only() {
        let record = crate::auth::keys::generate().unwrap();
        let jwk = crate::auth::keys::SigningKey::from_record(&record).unwrap().jwk;
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            jwk,
            {"kty": "oct", "k": "c2hhcmVk", "kid": "hmac", "alg": "HS256"}
        ]}))
        .unwrap();
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        assert_eq!(keys.len(), 1, "the symmetric key is never used");
        assert_eq!((keys[0].kid.as_str(), keys[0].algorithm), (record.kid.as_str(), Algorithm::ES256));
    }
}
