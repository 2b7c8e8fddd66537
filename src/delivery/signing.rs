//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, keyed by the secret after its `whsec_` prefix (base64).

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key of a secret; a secret without the prefix or not in base64 is used as raw bytes.
fn key_of(secret: &str) -> hmac::Key {
    let raw = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    hmac::Key::new(hmac::HMAC_SHA256, &raw)
}

/// The `webhook-signature` value of one message.
pub fn signature(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(&key_of(secret));
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The three headers of a signed message.
pub fn headers(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature(secret, id, timestamp, body)),
    ]
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is outside the {0} s tolerance")]
    Stale(u64),
    #[error("no signature in webhook-signature matches")]
    Mismatch,
}

/// Checks a message: its timestamp within `tolerance_s` of `now_s`, and one of the
/// space-separated `v1,` signatures matching (compared in constant time).
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), Refused> {
    let id = id.ok_or(Refused::Missing("webhook-id"))?;
    let timestamp = timestamp.ok_or(Refused::Missing("webhook-timestamp"))?;
    let signatures = signatures.ok_or(Refused::Missing("webhook-signature"))?;
    let at: u64 = timestamp.trim().parse().map_err(|_| Refused::BadTimestamp)?;
    if at.abs_diff(now_s) > tolerance_s {
        return Err(Refused::Stale(tolerance_s));
    }
    let key = key_of(secret);
    let mut message = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(at.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let matched = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|tag| hmac::verify(&key, &message, &tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_reference_example() {
        assert_eq!(signature(SECRET, ID, TIMESTAMP, BODY), EXPECTED);
    }

    #[test]
    fn verifies_within_tolerance_and_refuses_the_rest() {
        let check = |sigs: &str, body: &[u8], now: u64| {
            verify(SECRET, Some(ID), Some(&TIMESTAMP.to_string()), Some(sigs), body, now, 300)
        };
        assert_eq!(check(EXPECTED, BODY, TIMESTAMP + 10), Ok(()));
        assert_eq!(check(&format!("v1,bm9wZQ== {EXPECTED}"), BODY, TIMESTAMP), Ok(()), "any of several");
        assert_eq!(check(EXPECTED, b"{\"test\": 1}", TIMESTAMP), Err(Refused::Mismatch));
        assert_eq!(check(EXPECTED, BODY, TIMESTAMP + 301), Err(Refused::Stale(300)));
        assert_eq!(check("v2,abc", BODY, TIMESTAMP), Err(Refused::Mismatch));
        assert_eq!(verify(SECRET, None, Some("1"), Some(EXPECTED), BODY, 1, 300), Err(Refused::Missing("webhook-id")));
        let secret = new_secret();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() > 40, "{secret}");
        let [(_, id), (_, ts), (_, sig)] = headers(&secret, "msg_1", 100, b"x");
        assert_eq!(verify(&secret, Some(&id), Some(&ts), Some(&sig), b"x", 100, 300), Ok(()));
    }
}
