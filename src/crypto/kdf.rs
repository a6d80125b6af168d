//! argon2id, the only slow KDF here: it turns a receipt (and, later, a password) into keys.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

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
    /// OWASP's argon2id settings of equal strength (Password Storage Cheat Sheet): each trades
    /// memory for passes. The floor is "at least one of these". `benches/crypto.rs` times each
    /// alone and two at once; on the 2-core machine kind none contends clearly less than the
    /// default 19 MiB, t = 2 (README, "Sealing primitives").
    pub const OWASP_EQUIVALENTS: [Self; 5] = [
        Self::owasp(47_104, 1),
        Self::owasp(19_456, 2),
        Self::owasp(12_288, 3),
        Self::owasp(9_216, 4),
        Self::owasp(7_168, 5),
    ];

    const fn owasp(memory_kib: u32, iterations: u32) -> Self {
        Self {
            memory_kib,
            iterations,
            parallelism: 1,
        }
    }

    /// Whether these parameters are at least as costly as one of OWASP's equal-strength settings
    /// (at least as much memory and at least as many passes).
    pub fn meets_floor(&self) -> bool {
        self.parallelism >= 1
            && Self::OWASP_EQUIVALENTS.iter().any(|floor| {
                self.memory_kib >= floor.memory_kib && self.iterations >= floor.iterations
            })
    }

    /// The floor in words, for the start-up refusal.
    pub fn floor_text() -> String {
        Self::OWASP_EQUIVALENTS
            .iter()
            .map(|floor| {
                format!(
                    "m >= {} KiB with t >= {}",
                    floor.memory_kib, floor.iterations
                )
            })
            .collect::<Vec<_>>()
            .join(", or ")
    }

    /// The most memory accepted, in KiB (4 GiB): more is taken for a typo, or, read from the
    /// database, for tampering (the allocation alone would abort the process).
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes accepted.
    pub const MAX_ITERATIONS: u32 = 100;
    /// The most lanes accepted.
    pub const MAX_LANES: u32 = 16;

    /// Whether these parameters are within the ceilings above.
    pub fn within_ceiling(&self) -> bool {
        self.memory_kib <= Self::MAX_MEMORY_KIB
            && self.iterations <= Self::MAX_ITERATIONS
            && self.parallelism <= Self::MAX_LANES
    }

    /// The parameters in PHC-like notation, as recorded beside what they derived.
    pub fn encode(&self) -> String {
        format!(
            "argon2id$v=19$m={},t={},p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }

    /// Parses [`Argon2Params::encode`]'s notation, and only its one spelling of each value (no
    /// `+19456`, `019456`, repeated or reordered parameters), as the sealed headers do.
    /// Parameters below the floor or above the ceiling are refused like malformed ones: they
    /// come from the database, where a forged row could otherwise weaken an account's KDF or
    /// make one login allocate terabytes.
    pub fn decode(encoded: &str) -> Option<Self> {
        Self::decode_any(encoded).filter(|params| {
            params.encode() == encoded && params.meets_floor() && params.within_ceiling()
        })
    }

    fn decode_any(encoded: &str) -> Option<Self> {
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
    /// call it on the crypto pool (`crypto::pool`).
    pub fn derive(&self, secret: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| CryptoError::Kdf)?;
        let mut memory = take_memory(params.block_count());
        let derived = self.derive_in(secret, salt, &mut memory);
        return_memory(memory);
        scrub_stack();
        derived
    }

    /// [`Self::derive`] in the given working memory, of `Params::block_count` blocks.
    fn derive_in(
        &self,
        secret: &[u8],
        salt: &[u8],
        memory: &mut [Block],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| CryptoError::Kdf)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut output = Zeroizing::new([0u8; 32]);
        let outcome =
            argon2.hash_password_into_with_memory(secret, salt, output.as_mut(), &mut *memory);
        // Whoever reads this memory later (a core dump, swapped pages, the next run's buffer if
        // it leaked) could undo the later passes block by block, newest first, without the
        // secret (each XORs a compression of blocks still in memory into the old block), and so
        // reach the first pass, whose first blocks are a few compressions away from the secret:
        // a nearly free test of each guess of a receipt or password, whatever the pass count.
        // argon2's copies on the stack are overwritten by `derive` (see `scrub_stack`).
        for block in memory.iter_mut() {
            block.zeroize();
        }
        outcome.map_err(|_| CryptoError::Kdf)?;
        Ok(output)
    }
}

/// Overwrites the stack below this frame, where argon2 left blocks of its own (the first block of
/// each lane, one hash from the secret, and the last compression) that it does not wipe: the
/// crypto threads live long, and a core dump holds their stacks. Called from the frame that
/// called argon2, so that this frame lies where argon2's did.
#[inline(never)]
fn scrub_stack() {
    let mut scratch = [0u8; STACK_SCRUB_BYTES];
    scratch.zeroize();
    std::hint::black_box(&scratch);
}

/// How much of the stack [`scrub_stack`] overwrites: argon2 0.6's frames hold a handful of 1 KiB
/// blocks (the lane's first-block hash, the address and input blocks, the compression's working
/// copies), far less than this.
const STACK_SCRUB_BYTES: usize = 32 * 1024;

/// argon2id working memory kept for reuse. A fresh 19 MiB allocation per run is mapped and
/// faulted in again every time (measured: ~1,400 page faults and up to 4 ms of CPU per report);
/// reusing buffers removes that. At most [`POOLED_BUFFERS`] are kept, which covers the crypto
/// pool's concurrency. A buffer is wiped before it comes back (see [`Argon2Params::derive_in`]),
/// so it holds nothing of an earlier run; argon2's `zeroize` feature wipes its own copies of the
/// initial hash and the final block.
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
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_zero(memory: &[Block]) -> bool {
        memory
            .iter()
            .all(|block| AsRef::<[u64]>::as_ref(block).iter().all(|word| *word == 0))
    }

    #[test]
    fn a_run_leaves_no_state_in_its_memory_whatever_the_pass_count() {
        let passes = |iterations| Argon2Params {
            memory_kib: 64,
            iterations,
            parallelism: 1,
        };
        for iterations in [1, 2, 3] {
            let mut memory = vec![Block::default(); 64];
            let derived = passes(iterations)
                .derive_in(b"1234567890123456", &[7; 16], &mut memory)
                .unwrap();

            assert!(is_zero(&memory), "t = {iterations}");
            // The wipe comes after the output was taken.
            assert_ne!(*derived, [0; 32]);
            assert_eq!(
                derived,
                passes(iterations)
                    .derive(b"1234567890123456", &[7; 16])
                    .unwrap()
            );
        }
    }

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
        // Well formed, but below the floor or beyond the ceiling: a forged row.
        assert_eq!(Argon2Params::decode("argon2id$v=19$m=8,t=1,p=1"), None);
        assert_eq!(
            Argon2Params::decode("argon2id$v=19$m=4294967295,t=2,p=1"),
            None
        );
        assert_eq!(
            Argon2Params::decode("argon2id$v=19$m=19456,t=101,p=1"),
            None
        );
        assert_eq!(Argon2Params::decode("argon2id$v=19$m=19456,t=2,p=17"), None);
        // One spelling: the floor's own values, written any other way.
        assert!(Argon2Params::decode("argon2id$v=19$m=19456,t=2,p=1").is_some());
        for other in [
            "argon2id$v=19$m=+19456,t=2,p=1",
            "argon2id$v=19$m=019456,t=2,p=1",
            "argon2id$v=19$t=2,m=19456,p=1",
            "argon2id$v=19$m=1,m=19456,t=2,p=1",
            "argon2id$v=19$m=19456,t=2,p=1,p=1",
        ] {
            assert_eq!(Argon2Params::decode(other), None, "{other}");
        }
        let ceiling = Argon2Params {
            memory_kib: Argon2Params::MAX_MEMORY_KIB,
            iterations: Argon2Params::MAX_ITERATIONS,
            parallelism: Argon2Params::MAX_LANES,
        };
        assert_eq!(Argon2Params::decode(&ceiling.encode()), Some(ceiling));
    }

    #[test]
    fn the_floor_is_any_of_owasps_equal_strength_settings() {
        assert!(Argon2Params::default().meets_floor());
        for floor in Argon2Params::OWASP_EQUIVALENTS {
            assert!(floor.meets_floor(), "{}", floor.encode());
            // Each row is tight: one KiB less, or one pass fewer, meets no row.
            let less_memory = Argon2Params {
                memory_kib: floor.memory_kib - 1,
                ..floor
            };
            assert!(!less_memory.meets_floor(), "{}", less_memory.encode());
            let fewer_passes = Argon2Params {
                iterations: floor.iterations - 1,
                ..floor
            };
            assert!(!fewer_passes.meets_floor(), "{}", fewer_passes.encode());
        }
        let below_every_row = Argon2Params {
            memory_kib: 7_167,
            iterations: 100,
            parallelism: 1,
        };
        assert!(!below_every_row.meets_floor());
        let too_few_passes = Argon2Params {
            memory_kib: 12_288,
            iterations: 2,
            parallelism: 1,
        };
        assert!(!too_few_passes.meets_floor());
        let more_memory_one_pass = Argon2Params {
            memory_kib: 47_104,
            iterations: 1,
            parallelism: 1,
        };
        assert!(more_memory_one_pass.meets_floor());
        let no_lanes = Argon2Params {
            parallelism: 0,
            ..Argon2Params::default()
        };
        assert!(!no_lanes.meets_floor());
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
