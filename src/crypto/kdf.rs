//! argon2id, the only slow KDF here: it turns a receipt (and, later, a password) into keys.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptoError;

/// argon2id cost parameters. The defaults are OWASP's first recommendation for argon2id
/// (m = 19 MiB, t = 2, p = 1; OWASP Password Storage Cheat Sheet), which is also the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Argon2Params {
    /// OWASP's minimum for argon2id: 19 MiB of memory.
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    /// OWASP's minimum for argon2id at 19 MiB: two passes.
    pub const MIN_ITERATIONS: u32 = 2;

    /// Whether these parameters meet the OWASP floor.
    pub fn meets_floor(&self) -> bool {
        self.memory_kib >= Self::MIN_MEMORY_KIB
            && self.iterations >= Self::MIN_ITERATIONS
            && self.parallelism >= 1
    }

    /// The parameters in PHC-like notation, as recorded beside what they derived.
    pub fn encode(&self) -> String {
        format!(
            "argon2id$v=19$m={},t={},p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }

    /// Parses [`Argon2Params::encode`]'s notation.
    pub fn decode(encoded: &str) -> Option<Self> {
        let rest = encoded.strip_prefix("argon2id$v=19$")?;
        let mut memory_kib = None;
        let mut iterations = None;
        let mut parallelism = None;
        for part in rest.split(',') {
            let (name, value) = part.split_once('=')?;
            let value: u32 = value.parse().ok()?;
            match name {
                "m" => memory_kib = Some(value),
                "t" => iterations = Some(value),
                "p" => parallelism = Some(value),
                _ => return None,
            }
        }
        Some(Self {
            memory_kib: memory_kib?,
            iterations: iterations?,
            parallelism: parallelism?,
        })
    }

    /// Derives 32 bytes from `secret` and `salt` with argon2id v1.3 (RFC 9106). Slow on purpose:
    /// call it on the blocking pool.
    pub fn derive(&self, secret: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| CryptoError::Kdf)?;
        let mut memory = take_memory(params.block_count());
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut output = Zeroizing::new([0u8; 32]);
        let outcome =
            argon2.hash_password_into_with_memory(secret, salt, output.as_mut(), &mut memory[..]);
        return_memory(memory);
        outcome.map_err(|_| CryptoError::Kdf)?;
        Ok(output)
    }
}

/// argon2id working memory kept for reuse. A fresh 19 MiB allocation per run is mapped and
/// faulted in again every time (measured: ~1,400 page faults and up to 4 ms of CPU per report);
/// reusing buffers removes that. At most [`POOLED_BUFFERS`] are kept, which covers the crypto
/// pool's concurrency. The buffers hold argon2 state from earlier runs: a concern only for an
/// attacker who can already read this process's memory, which DESIGN §1 puts out of scope.
static MEMORY_POOL: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());
/// The most working buffers kept between runs.
const POOLED_BUFFERS: usize = 8;

fn take_memory(blocks: usize) -> Vec<Block> {
    let pooled = MEMORY_POOL.lock().ok().and_then(|mut pool| {
        let position = pool.iter().position(|buffer| buffer.len() == blocks)?;
        Some(pool.swap_remove(position))
    });
    pooled.unwrap_or_else(|| vec![Block::default(); blocks])
}

fn return_memory(buffer: Vec<Block>) {
    if let Ok(mut pool) = MEMORY_POOL.lock() {
        if pool.len() >= POOLED_BUFFERS {
            pool.remove(0);
        }
        pool.push(buffer);
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: Self::MIN_MEMORY_KIB,
            iterations: Self::MIN_ITERATIONS,
            parallelism: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_round_trips() {
        let params = Argon2Params {
            memory_kib: 131_072,
            iterations: 3,
            parallelism: 2,
        };
        assert_eq!(Argon2Params::decode(&params.encode()), Some(params));
        assert_eq!(Argon2Params::decode("argon2i$v=19$m=1,t=1,p=1"), None);
        assert_eq!(Argon2Params::decode("argon2id$v=19$m=1,t=1"), None);
    }

    #[test]
    fn the_default_is_the_owasp_floor() {
        assert!(Argon2Params::default().meets_floor());
        let weaker = Argon2Params {
            memory_kib: 19 * 1024 - 1,
            ..Argon2Params::default()
        };
        assert!(!weaker.meets_floor());
    }

    #[test]
    fn reused_memory_gives_the_same_result_as_fresh_memory() {
        let cheap = Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let first = cheap.derive(b"secret", b"salt-salt-salt-1").unwrap();
        let _other = cheap.derive(b"other secret", b"salt-salt-salt-2").unwrap();
        let again = cheap.derive(b"secret", b"salt-salt-salt-1").unwrap();
        let params = Params::new(64, 1, 1, Some(32)).unwrap();
        let mut reference = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(b"secret", b"salt-salt-salt-1", &mut reference)
            .unwrap();
        assert_eq!(*first, reference);
        assert_eq!(*again, reference);
    }

    #[test]
    fn derivation_is_deterministic_and_salt_dependent() {
        let cheap = Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let one = cheap.derive(b"secret", b"salt-salt-salt-1").unwrap();
        let again = cheap.derive(b"secret", b"salt-salt-salt-1").unwrap();
        let other = cheap.derive(b"secret", b"salt-salt-salt-2").unwrap();
        assert_eq!(*one, *again);
        assert_ne!(*one, *other);
    }
}
