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
    "Idempotency-Key must be 22 to 128 characters of letters, digits, '-' or '_': a version 4 or 7 UUID or a 128-bit random token"
)]
pub struct InvalidIdempotencyKey;

/// Whether `input` is a UUID whose version is not random enough to seal the receipt: version 1
/// and 6 (a time stamp and often the MAC address, with 14 random bits), 3 and 5 (a hash of a
/// name anyone may guess), 2, and the nil UUID. Anyone holding a stolen database could search
/// such keys against the stored lookup hashes and open the receipt. Versions 4 (122 random
/// bits) and 7 (74 random bits after a time stamp) pass; so does any key that is not a UUID.
/// Only the hyphenated spelling is judged: 32 bare hex digits are as often a random 128-bit
/// token (`token_hex(16)`), which a version check would refuse 15 times in 16.
fn predictable_uuid(input: &str) -> bool {
    version_of_uuid(input).is_some_and(|version| !matches!(version, b'4' | b'7'))
}

/// The version digit of a UUID written with hyphens; `None` for anything else.
fn version_of_uuid(input: &str) -> Option<u8> {
    let bytes = input.as_bytes();
    let shaped = bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        });
    shaped.then(|| bytes[14])
}

impl IdempotencyKey {
    /// Parses a header value.
    pub fn parse(input: &str) -> Result<Self, InvalidIdempotencyKey> {
        let length_ok =
            (MIN_IDEMPOTENCY_KEY_LENGTH..=MAX_IDEMPOTENCY_KEY_LENGTH).contains(&input.len());
        let alphabet_ok = input
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if length_ok && alphabet_ok && !predictable_uuid(input) {
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
    fn only_random_uuid_versions_are_keys() {
        // Version 4 and 7 (random bits after a time stamp) pass, in either case of hex.
        for random in [
            "0b6f3c2e-4a8d-4f7e-9c1a-2d3e4f5a6b7c",
            "0B6F3C2E-4A8D-4F7E-9C1A-2D3E4F5A6B7C",
            "01938f6e-7c2a-7b3e-9d41-6a8b2c4d5e6f",
        ] {
            assert!(IdempotencyKey::parse(random).is_ok(), "{random}");
        }
        // A time-and-MAC UUID (1, 6), a name hash (3, 5), version 2 and the nil UUID do not.
        for predictable in [
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "1ef1d8a3-5c7b-6e10-8a4d-00c04fd430c8",
            "a3bb189e-8bf9-3888-9912-ace4e6543002",
            "886313e1-3b8a-5372-9b90-0c9aee199e5d",
            "000003e8-2363-21ef-b200-325096b39f47",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(
                IdempotencyKey::parse(predictable).err(),
                Some(InvalidIdempotencyKey),
                "{predictable}"
            );
        }
        // Not a UUID: a 36-character token of the same alphabet is judged by length alone.
        assert!(IdempotencyKey::parse("0b6f3c2e_4a8d-1f7e-9c1a-2d3e4f5a6b7c").is_ok());
        // Bare hex is judged by length alone: it is as often a random token as a UUID.
        assert!(IdempotencyKey::parse("6ba7b8109dad11d180b400c04fd430c8").is_ok());
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
        fn a_key_of_the_alphabet_that_is_no_uuid_is_judged_by_its_length_alone(
            key in proptest::collection::vec(proptest::sample::select(KEY_ALPHABET.chars().collect::<Vec<_>>()), 0..140)
                .prop_map(|characters| characters.into_iter().collect::<String>())
        ) {
            prop_assume!(version_of_uuid(&key).is_none());
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
