//! Envelopes: every item of a case thread, sealed with age to the case recipient (DESIGN §3,
//! "Binding"). age has no associated data, so the case id, entry id and kind travel inside the
//! plaintext and are checked after decryption; a ciphertext moved to another row is refused.
//!
//! Plaintext layout (text, so that `age -d` output reads well):
//!
//! ```text
//! incident-vault envelope v1
//! case: K7QM-3XTA-9PWD
//! entry: 7W2Q0H8M4T1C9D5E
//! kind: report
//! length: 1234
//!
//! <length bytes of body><padding: '\n' up to the padded size>
//! ```
//!
//! The padded size is at least 1 KiB, then Padmé (Nikitin et al., PETS 2019), so that
//! the stored size leaks at most O(log log n) bits about the body's length.

use zeroize::Zeroizing;

use super::{CryptoError, encrypt_to};
use crate::domain::{CaseRef, EntryId, EntryKind};

const MAGIC: &str = "incident-vault envelope v1";
/// Smallest padded plaintext: every short report looks the same size.
pub const MIN_PADDED_LENGTH: usize = 1024;

/// What an envelope must be bound to.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeBinding<'a> {
    /// The case the envelope belongs to.
    pub case: &'a CaseRef,
    /// The entry (row) the envelope belongs to.
    pub entry: &'a EntryId,
    /// What the entry is.
    pub kind: EntryKind,
}

/// Seals `body` for `recipients` (the case recipient, and for messages to the reporter also the
/// reporter recipient).
pub fn seal_envelope(
    binding: EnvelopeBinding<'_>,
    body: &[u8],
    recipients: &[&dyn age::Recipient],
) -> Result<Vec<u8>, CryptoError> {
    let plaintext = encode_envelope_plaintext(binding, body);
    encrypt_to(recipients, &plaintext)
}

/// Opens an envelope and returns its body, after checking the binding.
pub fn open_envelope(
    binding: EnvelopeBinding<'_>,
    ciphertext: &[u8],
    identities: &[&dyn age::Identity],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let plaintext = super::decrypt_with(ciphertext, identities)?;
    decode_envelope_plaintext(binding, &plaintext)
}

/// Builds the padded plaintext of an envelope.
pub fn encode_envelope_plaintext(binding: EnvelopeBinding<'_>, body: &[u8]) -> Zeroizing<Vec<u8>> {
    let header = format!(
        "{MAGIC}\ncase: {}\nentry: {}\nkind: {}\nlength: {}\n\n",
        binding.case,
        binding.entry,
        binding.kind.as_str(),
        body.len()
    );
    let unpadded = header.len() + body.len();
    let padded = padded_length(unpadded);
    let mut plaintext = Zeroizing::new(Vec::with_capacity(padded));
    plaintext.extend_from_slice(header.as_bytes());
    plaintext.extend_from_slice(body);
    plaintext.resize(padded, b'\n');
    plaintext
}

/// Parses a padded plaintext and checks it against `binding`.
pub fn decode_envelope_plaintext(
    binding: EnvelopeBinding<'_>,
    plaintext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let header_end = plaintext
        .windows(2)
        .position(|window| window == b"\n\n")
        .ok_or(CryptoError::Malformed)?;
    let header =
        std::str::from_utf8(&plaintext[..header_end]).map_err(|_| CryptoError::Malformed)?;
    let mut lines = header.split('\n');
    if lines.next() != Some(MAGIC) {
        return Err(CryptoError::Malformed);
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|line| line.strip_prefix(name))
            .ok_or(CryptoError::Malformed)
    };
    let case = field("case: ")?;
    let entry = field("entry: ")?;
    let kind = field("kind: ")?;
    let length = super::canonical_decimal(field("length: ")?).ok_or(CryptoError::Malformed)?;
    if lines.next().is_some() {
        return Err(CryptoError::Malformed);
    }
    if case != binding.case.as_str()
        || entry != binding.entry.as_str()
        || kind != binding.kind.as_str()
    {
        return Err(CryptoError::BindingMismatch);
    }
    let body_start = header_end + 2;
    let body_end = body_start
        .checked_add(length)
        .ok_or(CryptoError::Malformed)?;
    if body_end > plaintext.len() || plaintext[body_end..].iter().any(|byte| *byte != b'\n') {
        return Err(CryptoError::Malformed);
    }
    Ok(Zeroizing::new(plaintext[body_start..body_end].to_vec()))
}

/// The padded size for a plaintext of `length` bytes: at least [`MIN_PADDED_LENGTH`], then
/// Padmé: keep the top ⌊log2 E⌋+1 bits of the length, where E = ⌊log2 length⌋.
pub fn padded_length(length: usize) -> usize {
    let length = length.max(MIN_PADDED_LENGTH) as u64;
    let exponent = 63 - u64::from(length.leading_zeros());
    let significant_bits = 64 - u64::from(exponent.leading_zeros());
    let zero_bits = exponent - significant_bits;
    let mask = (1u64 << zero_bits) - 1;
    ((length + mask) & !mask) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::x25519;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    fn binding<'a>(case: &'a CaseRef, entry: &'a EntryId) -> EnvelopeBinding<'a> {
        EnvelopeBinding {
            case,
            entry,
            kind: EntryKind::Report,
        }
    }

    fn round_trip(body: &[u8]) {
        let identity = x25519::Identity::generate();
        let (case, entry) = (CaseRef::generate(), EntryId::generate());
        let sealed = seal_envelope(binding(&case, &entry), body, &[&identity.to_public()]).unwrap();
        let opened = open_envelope(binding(&case, &entry), &sealed, &[&identity]).unwrap();
        assert_eq!(&**opened, body);
    }

    #[test]
    fn bodies_of_edge_sizes_round_trip() {
        for size in [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1] {
            let body: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
            round_trip(&body);
        }
    }

    #[test]
    fn an_envelope_of_another_entry_case_or_kind_is_refused() {
        let identity = x25519::Identity::generate();
        let (case, entry) = (CaseRef::generate(), EntryId::generate());
        let sealed =
            seal_envelope(binding(&case, &entry), b"body", &[&identity.to_public()]).unwrap();
        let other_entry = EntryId::generate();
        let other_case = CaseRef::generate();
        for wrong in [
            binding(&case, &other_entry),
            binding(&other_case, &entry),
            EnvelopeBinding {
                kind: EntryKind::InternalNote,
                ..binding(&case, &entry)
            },
        ] {
            assert!(matches!(
                open_envelope(wrong, &sealed, &[&identity]),
                Err(CryptoError::BindingMismatch)
            ));
        }
    }

    #[test]
    fn padding_hides_the_length_of_short_bodies() {
        let (case, entry) = (CaseRef::generate(), EntryId::generate());
        let short = encode_envelope_plaintext(binding(&case, &entry), b"a");
        let longer = encode_envelope_plaintext(binding(&case, &entry), &[b'a'; 700]);
        assert_eq!(short.len(), MIN_PADDED_LENGTH);
        assert_eq!(longer.len(), MIN_PADDED_LENGTH);
    }

    #[test]
    fn padme_matches_the_paper() {
        assert_eq!(padded_length(0), 1024);
        assert_eq!(padded_length(1025), 1088);
        assert_eq!(padded_length(100_000), 100_352);
    }

    #[test]
    fn tampered_padding_or_length_is_malformed() {
        let (case, entry) = (CaseRef::generate(), EntryId::generate());
        let mut plaintext = encode_envelope_plaintext(binding(&case, &entry), b"body").to_vec();
        let last = plaintext.len() - 1;
        plaintext[last] = b'x';
        assert!(matches!(
            decode_envelope_plaintext(binding(&case, &entry), &plaintext),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn a_length_spelled_otherwise_than_the_encoder_spells_it_is_malformed() {
        let (case, entry) = (CaseRef::generate(), EntryId::generate());
        let plaintext = encode_envelope_plaintext(binding(&case, &entry), b"body").to_vec();
        let text = String::from_utf8(plaintext).unwrap();
        assert!(text.contains("\nlength: 4\n\n"), "the encoder's spelling");
        for spelling in ["+4", "04", "0004", " 4", "4.0"] {
            let respelled = text.replacen("\nlength: 4\n", &format!("\nlength: {spelling}\n"), 1);
            assert!(
                matches!(
                    decode_envelope_plaintext(binding(&case, &entry), respelled.as_bytes()),
                    Err(CryptoError::Malformed)
                ),
                "length {spelling:?} was read"
            );
        }
        assert_eq!(crate::crypto::canonical_decimal("0"), Some(0));
        assert_eq!(crate::crypto::canonical_decimal("40"), Some(40));
    }

    /// A synthetic case reference and entry id, so that generated headers are reproducible.
    fn synthetic_case() -> CaseRef {
        CaseRef::parse("K7QM-3XTA-9PWD").unwrap()
    }

    fn synthetic_entry() -> EntryId {
        EntryId::parse("7W2Q0H8M4T1C9D5E").unwrap()
    }

    /// A plaintext that starts like an envelope, with what the test needs to judge the verdict.
    #[derive(Debug)]
    struct FramedPlaintext {
        /// The header, up to and including the blank line.
        header: String,
        bytes: Vec<u8>,
        magic_is_real: bool,
        /// Whether the case, entry and kind lines are exactly those of the binding.
        binding_lines_are_real: [bool; 3],
        extra_line: bool,
        /// Whether the length line states the body's length in plain decimal.
        length_is_exact: bool,
        /// Whether the length line is written as the encoder writes a length (digits only, no
        /// sign, no leading zero), whatever its value.
        length_is_canonical: bool,
        padding_is_clean: bool,
    }

    impl FramedPlaintext {
        fn binding_is_real(&self) -> bool {
            self.binding_lines_are_real.iter().all(|real| *real)
        }
    }

    /// One header line, `name: value`, mostly the binding's own; else another value, the same
    /// one in lower case, padded or without its space, random text, or no line at all. The flag
    /// says whether the line is exactly the binding's (lower case `report` still is).
    fn header_line(
        name: &'static str,
        real: String,
        others: Vec<String>,
    ) -> impl Strategy<Value = (Option<String>, bool)> {
        let exact = format!("{name}: {real}");
        let line = prop_oneof![
            30 => Just(Some(exact.clone())),
            3 => proptest::sample::select(others).prop_map(move |other| Some(format!("{name}: {other}"))),
            2 => Just(Some(format!("{name}: {}", real.to_lowercase()))),
            1 => Just(Some(format!("{name}: {real} "))),
            1 => Just(Some(format!("{name}:{real}"))),
            1 => "\\PC{0,16}".prop_map(move |junk| Some(format!("{name}: {junk}"))),
            1 => Just(None),
        ];
        line.prop_map(move |line| {
            let real = line.as_deref() == Some(exact.as_str());
            (line, real)
        })
    }

    /// What the length line states, relative to the body it frames.
    #[derive(Debug, Clone)]
    enum LengthLine {
        /// The body's length plus this many bytes (a negative result is written with its sign).
        Off(i64),
        /// `usize::MAX - body_start + offset`: the largest lengths, where the end of the body
        /// lands exactly on `usize::MAX` (offset 0) or just past it (offset 1).
        NearMax(usize),
        /// Text that is not the body's length in plain decimal.
        Written(&'static str),
        /// The body's length, with this written before it: `+`, or leading zeros.
        Prefixed(&'static str),
    }

    fn length_line() -> impl Strategy<Value = LengthLine> {
        prop_oneof![
            8 => Just(LengthLine::Off(0)),
            3 => (-3i64..=3).prop_map(LengthLine::Off),
            2 => (0usize..=1).prop_map(LengthLine::NearMax),
            3 => proptest::sample::select(vec![
                "",
                "-1",
                "1e3",
                " 4",
                "4 ",
                "0x10",
                "18446744073709551615",
                "18446744073709551616",
                "340282366920938463463374607431768211456",
                "\u{661}",
            ])
            .prop_map(LengthLine::Written),
            2 => proptest::sample::select(vec!["+", "0", "00"]).prop_map(LengthLine::Prefixed),
        ]
    }

    /// A plaintext framed as [`encode_envelope_plaintext`] frames one, with each part of the
    /// header, the length, the body and the padding either right or wrong.
    fn framed_plaintext() -> impl Strategy<Value = FramedPlaintext> {
        let magic = prop_oneof![
            30 => Just((MAGIC, true)),
            1 => Just(("incident-vault envelope v2", false)),
            1 => Just(("INCIDENT-VAULT ENVELOPE V1", false)),
            1 => Just(("", false)),
        ];
        let case = header_line(
            "case",
            synthetic_case().to_string(),
            vec!["K7QM-3XTA-9PWE".into(), "K7QM3XTA9PWD".into(), "".into()],
        );
        let entry = header_line(
            "entry",
            synthetic_entry().to_string(),
            vec![
                "7W2Q0H8M4T1C9D5F".into(),
                "7W2Q0H8M4T1C9D5".into(),
                "".into(),
            ],
        );
        let kind = header_line(
            "kind",
            EntryKind::Report.as_str().to_owned(),
            EntryKind::names()
                .into_iter()
                .filter(|name| *name != EntryKind::Report.as_str())
                .map(str::to_owned)
                .collect(),
        );
        let extra = proptest::option::weighted(0.1, "[a-z]{1,8}: [a-z0-9]{0,8}");
        let body = proptest::collection::vec(any::<u8>(), 0..200);
        let padding = (
            0usize..64,
            proptest::option::weighted(0.2, (any::<proptest::sample::Index>(), any::<u8>())),
        )
            .prop_map(|(length, stray)| {
                let mut padding = vec![b'\n'; length];
                if let Some((place, byte)) = stray {
                    if padding.is_empty() {
                        padding.push(byte);
                    } else {
                        let place = place.index(padding.len());
                        padding[place] = byte;
                    }
                }
                padding
            });
        (
            magic,
            (case, entry, kind),
            length_line(),
            extra,
            body,
            padding,
        )
            .prop_map(
                |(magic, (case, entry, kind), length, extra, body, padding)| {
                    let lines_before_length: Vec<String> =
                        [Some(magic.0.to_owned()), case.0, entry.0, kind.0]
                            .into_iter()
                            .flatten()
                            .collect();
                    let before_length = format!("{}\nlength: ", lines_before_length.join("\n"));
                    let after_length = match &extra {
                        Some(line) => format!("\n{line}\n\n"),
                        None => "\n\n".to_owned(),
                    };
                    let (stated, length_is_exact, length_is_canonical) = match length {
                        LengthLine::Off(offset) => {
                            let stated = i64::try_from(body.len()).unwrap() + offset;
                            (stated.to_string(), offset == 0, stated >= 0)
                        }
                        LengthLine::NearMax(offset) => {
                            // usize::MAX has 20 decimal digits, and so has every length near it.
                            let body_start = before_length.len() + 20 + after_length.len();
                            ((usize::MAX - body_start + offset).to_string(), false, true)
                        }
                        LengthLine::Written(text) => (text.to_owned(), false, false),
                        LengthLine::Prefixed(prefix) => {
                            (format!("{prefix}{}", body.len()), false, false)
                        }
                    };
                    let header = format!("{before_length}{stated}{after_length}");
                    let padding_is_clean = padding.iter().all(|byte| *byte == b'\n');
                    let bytes = [header.as_bytes(), &body, &padding].concat();
                    FramedPlaintext {
                        header,
                        bytes,
                        magic_is_real: magic.1,
                        binding_lines_are_real: [case.1, entry.1, kind.1],
                        extra_line: extra.is_some(),
                        length_is_exact,
                        length_is_canonical,
                        padding_is_clean,
                    }
                },
            )
    }

    #[test]
    fn framed_plaintexts_reach_every_verdict_of_the_decoder() {
        // A fixed seed, so this counts the same inputs on every run.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = framed_plaintext();
        let (case, entry) = (synthetic_case(), synthetic_entry());
        let (mut opened, mut mismatched, mut malformed_after_the_binding) = (0, 0, 0);
        for _ in 0..512 {
            let framed = strategy.new_tree(&mut runner).unwrap().current();
            match decode_envelope_plaintext(binding(&case, &entry), &framed.bytes) {
                Ok(_) => opened += 1,
                Err(CryptoError::BindingMismatch) => mismatched += 1,
                // The binding and the magic were right, so the length or the padding was not.
                Err(CryptoError::Malformed) if framed.binding_is_real() && framed.magic_is_real => {
                    malformed_after_the_binding += 1;
                }
                Err(_) => {}
            }
        }
        assert!(opened >= 50, "{opened} of 512 opened");
        assert!(
            mismatched >= 25,
            "{mismatched} of 512 refused for their binding"
        );
        assert!(
            malformed_after_the_binding >= 50,
            "{malformed_after_the_binding} of 512 refused for their length or padding"
        );
    }

    /// How many 64 KiB chunks the age payload of `ciphertext` holds, from its length: the payload
    /// follows the header's `--- <mac>` line and is a 16-byte nonce, then each chunk with its
    /// 16-byte tag (age spec, "Payload").
    fn payload_chunks(ciphertext: &[u8], plaintext_length: usize) -> usize {
        let mac_line = ciphertext
            .windows(5)
            .position(|window| window == b"\n--- ")
            .expect("an age header");
        let header_end = mac_line
            + 1
            + ciphertext[mac_line + 1..]
                .iter()
                .position(|byte| *byte == b'\n')
                .expect("the end of the header");
        let payload = ciphertext.len() - (header_end + 1);
        (payload - 16 - plaintext_length) / 16
    }

    #[test]
    fn plaintexts_on_ages_chunk_boundary_round_trip_and_refuse_truncation() {
        const CHUNK: usize = 64 * 1024;
        let identity = x25519::Identity::generate();
        let recipient = identity.to_public();
        for (size, chunks) in [
            (0, 1),
            (1, 1),
            (CHUNK - 1, 1),
            (CHUNK, 1),
            (CHUNK + 1, 2),
            (2 * CHUNK, 2),
        ] {
            let plaintext: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
            let ciphertext = crate::crypto::encrypt_to(&[&recipient], &plaintext).unwrap();
            assert_eq!(payload_chunks(&ciphertext, size), chunks, "{size} bytes");
            let opened = crate::crypto::decrypt_with(&ciphertext, &[&identity]).unwrap();
            assert!(*opened == plaintext, "{size} bytes came back different");

            let short_by_one = &ciphertext[..ciphertext.len() - 1];
            assert!(
                matches!(
                    crate::crypto::decrypt_with(short_by_one, &[&identity]),
                    Err(CryptoError::Undecryptable)
                ),
                "{size} bytes, less one of ciphertext, opened"
            );
            if chunks > 1 {
                // Without its last chunk, the payload ends on a chunk not marked final.
                let last_chunk = size - (chunks - 1) * CHUNK + 16;
                let without_last = &ciphertext[..ciphertext.len() - last_chunk];
                assert!(
                    matches!(
                        crate::crypto::decrypt_with(without_last, &[&identity]),
                        Err(CryptoError::Undecryptable)
                    ),
                    "{size} bytes without the last chunk opened"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_padding_never_shrinks(body in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let (case, entry) = (CaseRef::generate(), EntryId::generate());
            let plaintext = encode_envelope_plaintext(binding(&case, &entry), &body);
            prop_assert!(plaintext.len() >= body.len());
            let decoded = decode_envelope_plaintext(binding(&case, &entry), &plaintext).unwrap();
            prop_assert_eq!(&**decoded, body.as_slice());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (case, entry) = (CaseRef::generate(), EntryId::generate());
            let _ = decode_envelope_plaintext(binding(&case, &entry), &bytes);
        }

        #[test]
        fn padme_overhead_stays_below_twelve_percent(length in 1024usize..10_000_000) {
            let padded = padded_length(length);
            prop_assert!(padded >= length);
            prop_assert!((padded - length) as f64 <= length as f64 * 0.12);
        }
    }

    proptest! {
        // Four times the default: each kind of near miss on one binding line, with the rest of
        // the plaintext right, is about one case in a hundred.
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn a_framed_plaintext_is_judged_without_panicking_and_never_opens_for_another_binding(
            framed in framed_plaintext()
        ) {
            let (case, entry) = (synthetic_case(), synthetic_entry());
            let outcome = decode_envelope_plaintext(binding(&case, &entry), &framed.bytes);
            let bound = framed.binding_is_real();
            if !bound {
                prop_assert!(outcome.is_err(), "opened for another binding: {:?}", framed.header);
            }
            match outcome {
                Ok(decoded) => {
                    prop_assert!(
                        framed.magic_is_real && !framed.extra_line && framed.length_is_canonical,
                        "{:?}",
                        framed.header
                    );
                    // What follows the body may only be the '\n' padding.
                    let rest = &framed.bytes[framed.header.len()..];
                    prop_assert!(rest.starts_with(&decoded), "{:?}", framed.header);
                    prop_assert!(rest[decoded.len()..].iter().all(|byte| *byte == b'\n'));
                }
                Err(error) => {
                    // A plaintext framed exactly as the encoder frames it must open.
                    let canonical = bound
                        && framed.magic_is_real
                        && !framed.extra_line
                        && framed.length_is_exact
                        && framed.padding_is_clean;
                    prop_assert!(!canonical, "{:?} refused: {:?}", framed.header, error);
                }
            }
        }
    }
}
