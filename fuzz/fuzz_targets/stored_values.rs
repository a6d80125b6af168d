//! The parsers of values that come from a person or from the database (where a forged row may put
//! anything): case references, entry ids, receipts, idempotency keys, argon2id parameters and
//! grant plaintexts. None may panic. What a person types (a case reference, a receipt) may be
//! spelt many ways and parses to its one shown form; what is read from a row (an entry id,
//! argon2id parameters) has one spelling only.
#![no_main]

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use incident_vault::crypto::case_key::parse_grant_plaintext;
use incident_vault::crypto::kdf::Argon2Params;
use incident_vault::domain::{CaseRef, EntryId, IdempotencyKey, ReceiptCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(case) = CaseRef::parse(text) {
        // The shown form is a fixed point, and it is what is stored.
        assert_eq!(CaseRef::parse(case.as_str()).as_ref(), Ok(&case));
        assert_eq!(case.as_str().len(), 14);
    }
    if let Some(entry) = EntryId::parse(text) {
        assert_eq!(entry.as_str(), text, "a stored id has one spelling");
        assert_eq!(EntryId::parse(&entry.to_string()), Some(entry));
    }
    if let Ok(receipt) = ReceiptCode::parse(text) {
        let digits = receipt.digits();
        assert_eq!(digits.len(), 16);
        assert!(digits.bytes().all(|byte| byte.is_ascii_digit()));
        // The digits are the typed ones, in order: separators are all that is dropped.
        let typed: String = text.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(typed, digits);
        let shown = receipt.formatted();
        let again = ReceiptCode::parse(shown.expose_secret()).expect("the shown form parses");
        assert_eq!(again.digits(), digits);
    }
    if let Ok(key) = IdempotencyKey::parse(text) {
        // The key is hashed as sent: no normalisation may make two keys one.
        assert_eq!(key.as_bytes(), text.as_bytes());
    }
    if let Some(params) = Argon2Params::decode(text) {
        assert_eq!(
            params.encode(),
            text,
            "argon2id parameters have one spelling"
        );
        assert!(params.meets_floor() && params.within_ceiling());
    }
    let case = CaseRef::parse("K7QM-3XTA-9PWD").unwrap();
    if let Ok(identity) = parse_grant_plaintext(text, &case, 1) {
        assert!(text.lines().any(|line| line == "# case: K7QM-3XTA-9PWD"));
        assert!(text.lines().any(|line| line == "# epoch: 1"));
        // The one key line is the identity returned.
        let keys: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("AGE-SECRET-KEY-1"))
            .collect();
        assert_eq!(keys.len(), 1);
        let key = age::x25519::Identity::from_str(keys[0]).expect("it parsed once");
        assert_eq!(
            identity.recipient().to_string(),
            key.to_public().to_string()
        );
    }
});
