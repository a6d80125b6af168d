//! The `Idempotency-Key` a phone sends so that a retry after a lost answer files nothing twice.

use age::secrecy::{ExposeSecret, SecretString};

/// Shortest key accepted: 22 base64 characters carry 128 bits, the entropy DESIGN §3 asks for,
/// because the key also seals the stored answer.
pub const MIN_IDEMPOTENCY_KEY_LENGTH: usize = 22;
/// Longest key accepted.
pub const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 128;

/// A client-chosen idempotency key. Secret: it opens the stored answer, which holds the receipt.
pub struct IdempotencyKey(SecretString);

/// The header value is not an acceptable idempotency key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "Idempotency-Key must be 22 to 128 characters of letters, digits, '-' or '_' (a random UUID or 128-bit token)"
)]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Parses a header value.
    pub fn parse(input: &str) -> Result<Self, InvalidIdempotencyKey> {
        let length_ok =
            (MIN_IDEMPOTENCY_KEY_LENGTH..=MAX_IDEMPOTENCY_KEY_LENGTH).contains(&input.len());
        let alphabet_ok = input
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if length_ok && alphabet_ok {
            Ok(Self(SecretString::from(input)))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    /// The key's bytes, as input to the lookup hash and the sealing key derivation.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_an_acceptable_key() {
        assert!(IdempotencyKey::parse("0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7c").is_ok());
    }

    #[test]
    fn short_long_and_odd_keys_are_refused() {
        assert!(IdempotencyKey::parse("retry-1").is_err());
        assert!(IdempotencyKey::parse(&"a".repeat(129)).is_err());
        assert!(IdempotencyKey::parse("0b6f3c2e 4a8d 4f7e 9c1a 2d3e4f").is_err());
        assert!(IdempotencyKey::parse("0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7\u{e9}").is_err());
    }
}
