//! Micro-benchmarks of the cryptography done per report, beside the bare age operations they are
//! built on, so that the cost of our framing over bare age is visible.
//!
//! `cargo bench --bench crypto` (about a minute). Groups:
//! - `kdf`: the receipt's argon2id at each of OWASP's equal-strength settings, alone and two at
//!   once (one per core, as saturated intake runs them); and the default setting through
//!   `derive`, which wipes its working memory, beside bare argon2 that does not.
//! - `report_2KiB`: `seal_envelope` of a 2 KiB body to one recipient, bare `age::encrypt` of the
//!   same 2 KiB, and bare `age::encrypt` of the padded plaintext the envelope really seals (so the
//!   envelope's overhead splits into padding and framing).
//! - `grant`: `seal_grant` beside bare `age::encrypt` of a plaintext of the same length.
//! - `keygen`: one x25519 identity (intake makes two: the case and the reporter): its random
//!   bytes alone, then with the public key's scalar multiplication, then with both encoded.

use std::hint::black_box;
use std::time::Duration;

use age::secrecy::ExposeSecret;
use age::x25519;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use incident_vault::crypto::case_key::{CaseIdentity, seal_grant};
use incident_vault::crypto::envelope::{EnvelopeBinding, encode_envelope_plaintext, seal_envelope};
use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::domain::{CaseRef, EntryId, EntryKind};

const BODY_BYTES: usize = 2048;

fn body() -> Vec<u8> {
    let sentence = b"Synthetic benchmark text, no real report. ";
    sentence.iter().copied().cycle().take(BODY_BYTES).collect()
}

fn kdf(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("kdf");
    group.sampling_mode(SamplingMode::Flat);
    // OWASP's argon2id settings of equal strength (Password Storage Cheat Sheet), each alone and
    // two at once. They differ in working memory: this shows whether two runs that together fit
    // the machine's shared 32 MiB L3 slow each other less (on 2026-11-29 they did not).
    for params in Argon2Params::OWASP_EQUIVALENTS {
        let name = params.encode();
        group.bench_function(format!("{name}_alone"), |bencher| {
            bencher.iter(|| {
                params
                    .derive(black_box(b"1234567890123456"), black_box(&[7u8; 32]))
                    .expect("OWASP parameters are valid")
            });
        });
        // Two runs side by side, one per core, as the saturated intake runs them: the time of
        // one iteration is the time of each run under contention for memory bandwidth and caches.
        group.bench_function(format!("{name}_two_at_once_per_run"), |bencher| {
            bencher.iter(|| {
                std::thread::scope(|scope| {
                    let other = scope.spawn(|| params.derive(b"6543210987654321", &[9u8; 32]));
                    let here = params.derive(black_box(b"1234567890123456"), black_box(&[7u8; 32]));
                    let there = other.join().expect("the second KDF thread finishes");
                    (
                        here.expect("valid parameters"),
                        there.expect("valid parameters"),
                    )
                })
            });
        });
    }
    // What wiping the working memory after each run costs: the default setting through
    // `derive` (which wipes), beside bare argon2 in a buffer of its own that is never wiped.
    let default = Argon2Params::default();
    let raw = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(
            default.memory_kib,
            default.iterations,
            default.parallelism,
            Some(32),
        )
        .expect("the default parameters are valid"),
    );
    let mut memory = vec![argon2::Block::default(); raw.params().block_count()];
    group.bench_function("default_bare_argon2_no_wipe", |bencher| {
        bencher.iter(|| {
            let mut output = [0u8; 32];
            raw.hash_password_into_with_memory(
                black_box(b"1234567890123456"),
                black_box(&[7u8; 32]),
                &mut output,
                &mut memory[..],
            )
            .expect("valid parameters");
            output
        });
    });
    group.bench_function("default_derive_with_wipe", |bencher| {
        bencher.iter(|| {
            default
                .derive(black_box(b"1234567890123456"), black_box(&[7u8; 32]))
                .expect("valid parameters")
        });
    });
    group.finish();
}

fn report(criterion: &mut Criterion) {
    let recipient = x25519::Identity::generate().to_public();
    let (case, entry) = (CaseRef::generate(), EntryId::generate());
    let binding = EnvelopeBinding {
        case: &case,
        entry: &entry,
        kind: EntryKind::Report,
    };
    let body = body();
    let padded = encode_envelope_plaintext(binding, &body);

    let mut group = criterion.benchmark_group("report_2KiB");
    group.throughput(Throughput::Bytes(BODY_BYTES as u64));
    group.bench_function("seal_envelope_1_recipient", |bencher| {
        bencher.iter(|| {
            seal_envelope(binding, black_box(&body), &[&recipient]).expect("sealing works")
        });
    });
    group.bench_function("bare_age_encrypt_2KiB", |bencher| {
        bencher.iter(|| age::encrypt(&recipient, black_box(&body)).expect("encryption works"));
    });
    group.bench_function(
        format!("bare_age_encrypt_padded_{}B", padded.len()),
        |bencher| {
            bencher
                .iter(|| age::encrypt(&recipient, black_box(&padded)).expect("encryption works"));
        },
    );
    group.bench_function("encode_envelope_plaintext_only", |bencher| {
        bencher.iter(|| encode_envelope_plaintext(binding, black_box(&body)));
    });
    group.finish();
}

fn grant(criterion: &mut Criterion) {
    let escrow = x25519::Identity::generate().to_public();
    let case = CaseRef::generate();
    let identity = CaseIdentity::generate();
    // A plaintext as long as the grant's: header comments, then the identity line.
    let secret = x25519::Identity::generate().to_string();
    let plaintext = format!(
        "# incident-vault case grant\n# case: {case}\n# epoch: 1\n{}\n",
        secret.expose_secret()
    );
    let plaintext = plaintext.into_bytes();

    let mut group = criterion.benchmark_group("grant");
    group.bench_function("seal_grant", |bencher| {
        bencher
            .iter(|| seal_grant(&identity, black_box(&case), 1, &escrow).expect("sealing works"));
    });
    group.bench_function(
        format!("bare_age_encrypt_{}B", plaintext.len()),
        |bencher| {
            bencher
                .iter(|| age::encrypt(&escrow, black_box(&plaintext)).expect("encryption works"));
        },
    );
    group.finish();
}

fn keygen(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("keygen");
    // `generate` only draws 32 random bytes; the scalar multiplication that makes the public key
    // happens in `to_public`, and the bech32 encoding in `to_string`: one case for each step.
    group.bench_function("x25519_identity_generate", |bencher| {
        bencher.iter(x25519::Identity::generate);
    });
    group.bench_function("x25519_identity_generate_and_to_public", |bencher| {
        bencher.iter(|| x25519::Identity::generate().to_public());
    });
    group.bench_function("x25519_identity_generate_and_encode", |bencher| {
        bencher.iter(|| {
            let identity = x25519::Identity::generate();
            (identity.to_string(), identity.to_public().to_string())
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = kdf, report, grant, keygen
}
criterion_main!(benches);
