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
    use proptest::prelude::*;

    /// Every character an idempotency key may hold: the base64url alphabet.
    const KEY_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

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

    #[test]
    fn the_length_limits_are_inclusive_and_the_minimum_carries_128_bits() {
        // A base64url character carries 6 bits: 128 bits take 22 characters; 21 carry only 126.
        let shortest = 128usize.div_ceil(6);
        for (length, accepted) in [
            (shortest - 1, false),
            (shortest, true),
            (128, true),
            (129, false),
        ] {
            let key = "aZ0-_".chars().cycle().take(length).collect::<String>();
            assert_eq!(IdempotencyKey::parse(&key).is_ok(), accepted, "{length}");
        }
        // The sentence a client reads names the same limits.
        let limits = format!("{MIN_IDEMPOTENCY_KEY_LENGTH} to {MAX_IDEMPOTENCY_KEY_LENGTH}");
        assert!(InvalidIdempotencyKey.to_string().contains(&limits));
    }

    #[test]
    fn an_accepted_key_keeps_its_exact_bytes() {
        let key = "Ab-_".repeat(8);
        assert_eq!(
            IdempotencyKey::parse(&key).unwrap().as_bytes(),
            key.as_bytes()
        );
    }

    proptest! {
        #[test]
        fn a_key_of_the_alphabet_is_judged_by_its_length_alone(
            key in proptest::collection::vec(proptest::sample::select(KEY_ALPHABET.chars().collect::<Vec<_>>()), 0..140)
                .prop_map(|characters| characters.into_iter().collect::<String>())
        ) {
            let in_range = (MIN_IDEMPOTENCY_KEY_LENGTH..=MAX_IDEMPOTENCY_KEY_LENGTH).contains(&key.len());
            prop_assert_eq!(IdempotencyKey::parse(&key).is_ok(), in_range);
        }

        #[test]
        fn a_key_with_any_character_outside_the_alphabet_is_refused(
            prefix in "[A-Za-z0-9_-]{0,70}",
            // Half ASCII (space, '+', '/', '=', controls …), half any Unicode scalar value.
            foreign in prop_oneof![(0u8..128).prop_map(char::from), any::<char>()]
                .prop_filter("outside the alphabet", |character| !KEY_ALPHABET.contains(*character)),
            suffix in "[A-Za-z0-9_-]{0,70}",
        ) {
            // Mostly within the length limits, so only the foreign character can be why.
            let key = format!("{prefix}{foreign}{suffix}");
            prop_assert!(IdempotencyKey::parse(&key).is_err(), "{:?}", key);
        }
    }
}
