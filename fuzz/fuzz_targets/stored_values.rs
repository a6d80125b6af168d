//! The parsers of values that come from a person or from the database (where a forged row may put
//! anything): case references, entry ids, receipts, idempotency keys, argon2id parameters and
//! grant plaintexts. None may panic, and each accepts one spelling of what it returns.
#![no_main]

use age::secrecy::ExposeSecret;
use incident_vault::crypto::case_key::parse_grant_plaintext;
use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::domain::idempotency::{MAX_IDEMPOTENCY_KEY_LENGTH, MIN_IDEMPOTENCY_KEY_LENGTH};
use incident_vault::domain::{CaseRef, EntryId, IdempotencyKey, ReceiptCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(case) = CaseRef::parse(text) {
        assert_eq!(CaseRef::parse(case.as_str()).as_ref(), Ok(&case));
    }
    if let Some(entry) = EntryId::parse(text) {
        assert_eq!(entry.as_str(), text, "a stored id has one spelling");
    }
    if let Ok(receipt) = ReceiptCode::parse(text) {
        let digits = receipt.digits();
        assert_eq!(digits.len(), 16);
        assert!(digits.bytes().all(|byte| byte.is_ascii_digit()));
        let shown = receipt.formatted();
        let again = ReceiptCode::parse(shown.expose_secret()).expect("the shown form parses");
        assert_eq!(again.digits(), digits);
    }
    if IdempotencyKey::parse(text).is_ok() {
        assert!((MIN_IDEMPOTENCY_KEY_LENGTH..=MAX_IDEMPOTENCY_KEY_LENGTH).contains(&text.len()));
        assert!(
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
            "a key outside the base64url alphabet"
        );
    }
    if let Some(params) = Argon2Params::decode(text) {
        assert_eq!(
            params.encode(),
            text,
            "argon2id parameters have one spelling"
        );
    }
    let case = CaseRef::parse("K7QM-3XTA-9PWD").unwrap();
    if let Ok(identity) = parse_grant_plaintext(text, &case, 1) {
        assert!(text.lines().any(|line| line == "# case: K7QM-3XTA-9PWD"));
        assert!(text.lines().any(|line| line == "# epoch: 1"));
        let _ = identity.recipient();
    }
});
