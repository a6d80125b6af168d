//! Random, non-sequential identifiers in Crockford base32, so that ids reveal neither order nor
//! volume, and read well aloud (no I, L, O or U).

use rand::{Rng, rngs::OsRng};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `length` random Crockford base32 characters (5 bits of entropy each).
pub(crate) fn random_base32(length: usize) -> String {
    (0..length)
        .map(|_| CROCKFORD[OsRng.gen_range(0..32)] as char)
        .collect()
}

/// Normalises user-typed base32: upper case, common misreadings mapped, separators dropped.
pub(crate) fn normalise_base32(input: &str) -> Option<String> {
    let mut out = String::with_capacity(input.len());
    for character in input.chars() {
        let mapped = match character.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            other if other.is_ascii() && CROCKFORD.contains(&(other as u8)) => other,
            _ => return None,
        };
        out.push(mapped);
    }
    Some(out)
}
