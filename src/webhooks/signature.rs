//! Checking the signature of an incoming webhook against the trigger's secret, over the raw
//! body exactly as received. Three schemes:
//!
//! * `hmac-sha256`: hex HMAC-SHA256 of the body, optionally prefixed `sha256=`, in
//!   `X-Webhook-Signature` (or the header the trigger names);
//! * `github`: the same in `X-Hub-Signature-256` with the `sha256=` prefix;
//! * `standard-webhooks`: `webhook-id`, `webhook-timestamp` and `webhook-signature`, the
//!   timestamp within 5 minutes (replays are refused by the caller, see [`replay_key`]).
//!
//! Comparisons are constant-time (the HMAC library's verify).

use aws_lc_rs::hmac;
use axum::http::HeaderMap;

use crate::config::SignatureScheme;
use crate::delivery::signing;

/// How far a Standard Webhooks timestamp may be from now.
pub const TOLERANCE_S: u64 = 300;

/// A refused signature, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSignature(pub String);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Checks `body` against the scheme; `header_name` overrides the `hmac-sha256` header.
pub fn verify(
    scheme: SignatureScheme,
    secret: &str,
    header_name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now_s: u64,
) -> Result<(), BadSignature> {
    match scheme {
        SignatureScheme::HmacSha256 => {
            let name = header_name.unwrap_or("x-webhook-signature");
            verify_hex(secret, name, header(headers, name), body)
        }
        SignatureScheme::Github => {
            let value = header(headers, "x-hub-signature-256");
            if value.is_some_and(|v| !v.starts_with("sha256=")) {
                return Err(BadSignature("X-Hub-Signature-256 must start with sha256=".into()));
            }
            verify_hex(secret, "X-Hub-Signature-256", value, body)
        }
        SignatureScheme::StandardWebhooks => signing::verify(
            secret,
            header(headers, "webhook-id"),
            header(headers, "webhook-timestamp"),
            header(headers, "webhook-signature"),
            body,
            now_s,
            TOLERANCE_S,
        )
        .map_err(|e| BadSignature(e.to_string())),
    }
}

fn verify_hex(secret: &str, name: &str, value: Option<&str>, body: &[u8]) -> Result<(), BadSignature> {
    let value = value.ok_or_else(|| BadSignature(format!("missing {name} header")))?;
    let hex = value.strip_prefix("sha256=").unwrap_or(value);
    let tag = decode_hex(hex).ok_or_else(|| BadSignature(format!("{name} is not a hex HMAC-SHA256")))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag).map_err(|_| BadSignature(format!("{name} does not match the body")))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// The Standard Webhooks message a request carries, for replay detection: its id and
/// timestamp (the signature covers both, so a replay repeats them).
pub fn replay_key(headers: &HeaderMap) -> Option<(String, u64)> {
    let id = header(headers, "webhook-id")?.to_string();
    let at = header(headers, "webhook-timestamp")?.parse().ok()?;
    Some((id, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    // echo -n 'hello' | openssl dgst -sha256 -hmac 'It'"'"'s a Secret to Everybody' (GitHub's docs).
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_signatures_verify_against_githubs_example() {
        let h = headers(&[("x-hub-signature-256", GITHUB_SIG)]);
        assert_eq!(verify(SignatureScheme::Github, GITHUB_SECRET, None, &h, GITHUB_BODY, 0), Ok(()));
        assert!(verify(SignatureScheme::Github, GITHUB_SECRET, None, &h, b"Hello, World?", 0).is_err());
        let bare = headers(&[("x-hub-signature-256", &GITHUB_SIG[7..])]);
        assert!(verify(SignatureScheme::Github, GITHUB_SECRET, None, &bare, GITHUB_BODY, 0).is_err());
        let err = verify(SignatureScheme::Github, GITHUB_SECRET, None, &HeaderMap::new(), GITHUB_BODY, 0).unwrap_err();
        assert!(err.0.contains("missing X-Hub-Signature-256"), "{err}");
    }

    #[test]
    fn hmac_sha256_takes_hex_with_or_without_prefix_in_a_configurable_header() {
        let hex = &GITHUB_SIG[7..];
        for value in [hex.to_string(), format!("sha256={hex}"), hex.to_uppercase()] {
            let h = headers(&[("x-webhook-signature", &value)]);
            assert_eq!(verify(SignatureScheme::HmacSha256, GITHUB_SECRET, None, &h, GITHUB_BODY, 0), Ok(()), "{value}");
        }
        let custom = headers(&[("x-shop-hmac", hex)]);
        assert_eq!(
            verify(SignatureScheme::HmacSha256, GITHUB_SECRET, Some("x-shop-hmac"), &custom, GITHUB_BODY, 0),
            Ok(())
        );
        let short = headers(&[("x-webhook-signature", "abcd")]);
        assert!(verify(SignatureScheme::HmacSha256, GITHUB_SECRET, None, &short, GITHUB_BODY, 0)
            .unwrap_err()
            .0
            .contains("not a hex"));
    }
}
