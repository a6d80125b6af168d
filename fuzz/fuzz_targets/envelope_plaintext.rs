//! The envelope decoder reads decrypted bytes that an attacker with database access may have
//! chosen (sealed to a case recipient, which is public): it must never panic.
#![no_main]

use incident_vault::crypto::envelope::{
    EnvelopeBinding, decode_envelope_plaintext, encode_envelope_plaintext,
};
use incident_vault::domain::{CaseRef, EntryId, EntryKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = CaseRef::parse("K7QM-3XTA-9PWD").unwrap();
    let entry = EntryId::parse("7W2Q0H8M4T1C9D5E").unwrap();
    let binding = EnvelopeBinding {
        case: &case,
        entry: &entry,
        kind: EntryKind::Report,
    };
    let _ = decode_envelope_plaintext(binding, data);
    let encoded = encode_envelope_plaintext(binding, data);
    let decoded = decode_envelope_plaintext(binding, &encoded).expect("our own encoding decodes");
    assert_eq!(&**decoded, data);
});
