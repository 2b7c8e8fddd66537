//! Opaque page tokens: a number (where the next page starts) under a prefix naming the listing,
//! in base64url, so a token from one listing is refused by another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The token carrying `position` for the listing `prefix`.
pub fn encode(prefix: &str, position: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}:{position}"))
}

/// The position of a token issued by [`encode`] with the same prefix.
pub fn decode(prefix: &str, token: &str) -> Option<u64> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
    text.strip_prefix(prefix)?.strip_prefix(':')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_belong_to_their_listing() {
        assert_eq!(decode("a", &encode("a", 42)), Some(42));
        assert_eq!(decode("b", &encode("a", 42)), None);
        for bad in ["", "!!!", "YQ", &URL_SAFE_NO_PAD.encode("a:x")] {
            assert_eq!(decode("a", bad), None, "{bad}");
        }
    }
}
