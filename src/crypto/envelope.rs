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
    let length: usize = field("length: ")?
        .parse()
        .map_err(|_| CryptoError::Malformed)?;
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
}
