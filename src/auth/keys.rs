//! Token signing keys: ES256 on P-256. The newest key signs; every key verifies until it is
//! removed, so tokens signed before a rotation stay valid until they expire. Keys are generated
//! here (or loaded from a PKCS#8 PEM file) and kept in the store, so every instance of a
//! deployment signs and verifies with the same keys.

use std::collections::HashMap;

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::store::tenants::KeyRecord;

/// One usable key.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key as a JWK.
    pub jwk: Value,
}

/// A new random P-256 key.
pub fn generate() -> Result<KeyRecord, String> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| format!("key generation: {e}"))?;
    let pkcs8 = pair.to_pkcs8v1().map_err(|e| format!("key encoding: {e}"))?;
    record(pkcs8.as_ref())
}

/// A key from a PKCS#8 PEM file's text (`-----BEGIN PRIVATE KEY-----`).
pub fn from_pem(text: &str) -> Result<KeyRecord, String> {
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err("expected a PKCS#8 PEM block (-----BEGIN PRIVATE KEY-----) holding a P-256 key".into());
    }
    let der = STANDARD.decode(body).map_err(|e| format!("the PEM block is not base64: {e}"))?;
    record(&der)
}

fn record(pkcs8: &[u8]) -> Result<KeyRecord, String> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| "not a PKCS#8 P-256 (ES256) private key".to_string())?;
    let (x, y) = coordinates(&pair)?;
    Ok(KeyRecord { kid: thumbprint(&x, &y), pkcs8: STANDARD.encode(pkcs8), created_ms: now_ms() })
}

/// The base64url x and y of the public point.
fn coordinates(pair: &EcdsaKeyPair) -> Result<(String, String), String> {
    let point = pair.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err("unexpected public key encoding".into());
    }
    Ok((URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..])))
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
}

impl SigningKey {
    /// The usable key of a stored record.
    pub fn from_record(record: &KeyRecord) -> Result<SigningKey, String> {
        let der = STANDARD.decode(&record.pkcs8).map_err(|e| format!("key {}: {e}", record.kid))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| format!("key {} is not a P-256 key", record.kid))?;
        let (x, y) = coordinates(&pair)?;
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| format!("key {}: {e}", record.kid))?;
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": record.kid, "alg": "ES256", "use": "sig"});
        Ok(SigningKey { kid: record.kid.clone(), encoding: EncodingKey::from_ec_der(&der), decoding, jwk })
    }
}

/// The keys of a deployment: the newest signs, all verify.
pub struct KeyRing {
    by_kid: HashMap<String, SigningKey>,
    /// Kids oldest first.
    order: Vec<String>,
}

impl KeyRing {
    /// A ring of stored keys (oldest first); unusable records are skipped with a warning.
    pub fn new(records: &[KeyRecord]) -> KeyRing {
        let mut by_kid = HashMap::new();
        let mut order = Vec::new();
        for record in records {
            match SigningKey::from_record(record) {
                Ok(key) => {
                    order.push(key.kid.clone());
                    by_kid.insert(key.kid.clone(), key);
                }
                Err(e) => tracing::warn!(error = %e, "skipping an unusable signing key"),
            }
        }
        KeyRing { by_kid, order }
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Option<&SigningKey> {
        self.order.last().and_then(|kid| self.by_kid.get(kid))
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.by_kid.get(kid)
    }

    /// The public keys as a JWK set, newest first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> =
            self.order.iter().rev().filter_map(|kid| self.by_kid.get(kid)).map(|k| &k.jwk).collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem_and_records() {
        let record = generate().unwrap();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", record.pkcs8);
        let loaded = from_pem(&pem).unwrap();
        assert_eq!(loaded.kid, record.kid);
        let key = SigningKey::from_record(&record).unwrap();
        assert_eq!(key.jwk["kid"], record.kid);
        assert_eq!(key.jwk["crv"], "P-256");
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example_shape() {
        // Same members in the same order give the same thumbprint; it is 43 base64url chars.
        let t = thumbprint("abc", "def");
        assert_eq!(t.len(), 43);
        assert_eq!(t, thumbprint("abc", "def"));
        assert_ne!(t, thumbprint("abd", "def"));
    }

    #[test]
    fn pem_without_a_private_key_block_is_refused() {
        let err = from_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n").unwrap_err();
        assert!(err.contains("PKCS#8"), "{err}");
    }
}
