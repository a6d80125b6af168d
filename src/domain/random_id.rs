//! Random, non-sequential identifiers in Crockford base32, so that ids reveal neither order nor
//! volume, and read well aloud (no I, L, O or U).

use rand::{RngCore, rngs::OsRng};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `length` random Crockford base32 characters (5 bits of entropy each), from one call to the
/// operating system's CSPRNG: the low five bits of a uniform byte are uniform, since 32 divides
/// 256, so no byte is rejected. (Drawing each character on its own cost one system call per
/// character, 28 per report between the case reference and the entry id.)
pub(crate) fn random_base32(length: usize) -> String {
    let mut bytes = vec![0u8; length];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|byte| char::from(CROCKFORD[usize::from(byte & 31)]))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_is_drawn_about_equally_often_at_every_position() {
        // 32 symbols × 12 positions, 64,000 draws: each count is binomial with mean 2,000 and
        // standard deviation ~44, so the bounds sit ~7 deviations out. A mapping that favoured
        // some symbols (a modulo of a range that 32 does not divide, a shifted window) or fixed a
        // position would land far outside them.
        const DRAWS: usize = 64_000;
        const LENGTH: usize = 12;
        let mut counts = [[0u32; 32]; LENGTH];
        for _ in 0..DRAWS {
            let id = random_base32(LENGTH);
            assert_eq!(id.len(), LENGTH);
            for (position, symbol) in id.bytes().enumerate() {
                let index = CROCKFORD
                    .iter()
                    .position(|candidate| *candidate == symbol)
                    .expect("a Crockford symbol");
                counts[position][index] += 1;
            }
        }
        for (position, row) in counts.iter().enumerate() {
            for (index, count) in row.iter().enumerate() {
                assert!(
                    (1_700..=2_300).contains(count),
                    "symbol {} at position {position} drawn {count} times of {DRAWS}",
                    char::from(CROCKFORD[index])
                );
            }
        }
    }
}
