//! Constant-time comparison of a presented secret with the configured one. Both sides are
//! hashed first, so neither the content nor the length of the secret shows in the timing.

use aws_lc_rs::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// `given` equals `expected`, compared in time independent of both.
pub fn matches(given: &[u8], expected: &[u8]) -> bool {
    let a = digest(&SHA256, given);
    let b = digest(&SHA256, expected);
    a.as_ref().ct_eq(b.as_ref()).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_secrets_match_and_others_do_not() {
        assert!(super::matches(b"s3cret", b"s3cret"));
        assert!(!super::matches(b"s3cre", b"s3cret"));
        assert!(!super::matches(b"s3cret ", b"s3cret"));
        assert!(!super::matches(b"", b"s3cret"));
        assert!(!super::matches(b"s3creT", b"s3cret"), "a difference in the last byte");
        assert!(!super::matches(b"S3cret", b"s3cret"), "a difference in the first byte");
    }
}
