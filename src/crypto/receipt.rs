//! Receipt keys (DESIGN §3, "Reporter follow-up"): one argon2id run over the receipt digits, with
//! the instance-wide salt, then HKDF-SHA256 into a lookup id and a wrap key. The lookup id finds
//! the `reporter_access` row; the wrap key opens the reporter's own age identity.

use age::x25519;

use super::CryptoError;
use super::kdf::Argon2Params;
use super::symmetric::SymmetricKey;
use crate::domain::{CaseRef, ReceiptCode};

const LOOKUP_PURPOSE: &str = "incident-vault/receipt/lookup/v1";
const WRAP_PURPOSE: &str = "incident-vault/receipt/wrap/v1";

/// The instance-wide random salt of the receipt KDF, created on first start.
#[derive(Clone, PartialEq, Eq)]
pub struct InstanceSalt(pub [u8; 32]);

/// What a receipt derives: a public lookup id and a secret wrap key.
pub struct ReceiptKeys {
    /// Stored in clear: finds the row, reveals nothing without the receipt.
    pub lookup_id: [u8; 32],
    /// Seals the reporter identity.
    pub wrap_key: SymmetricKey,
}

/// Runs the receipt KDF. Slow (one argon2id run): call it on the crypto pool (`crypto::pool`).
pub fn derive_receipt_keys(
    receipt: &ReceiptCode,
    salt: &InstanceSalt,
    params: &Argon2Params,
) -> Result<ReceiptKeys, CryptoError> {
    let master = params.derive(receipt.digits().as_bytes(), &salt.0)?;
    let lookup = SymmetricKey::derive(master.as_ref(), &[], LOOKUP_PURPOSE);
    Ok(ReceiptKeys {
        lookup_id: lookup.expose_bytes(),
        wrap_key: SymmetricKey::derive(master.as_ref(), &[], WRAP_PURPOSE),
    })
}

/// A reporter's own age identity, generated at intake and sealed under the receipt wrap key.
pub struct SealedReporterIdentity {
    /// `age1…`: messages to the reporter are also sealed to it.
    pub recipient: String,
    /// The identity, sealed under the wrap key with the lookup id and the case id as associated
    /// data.
    pub sealed_identity: Vec<u8>,
}

/// The associated data of a sealed reporter identity: the lookup id (32 bytes) and then the case
/// id. A row whose `case_id` was rewritten no longer opens, so a receipt cannot be pointed at
/// another case (its messages, its consent) by editing the database.
fn associated_data(keys: &ReceiptKeys, case: &CaseRef) -> Vec<u8> {
    [keys.lookup_id.as_slice(), case.as_str().as_bytes()].concat()
}

/// Generates a reporter identity for `case` and seals it under `keys`.
pub fn seal_new_reporter_identity(keys: &ReceiptKeys, case: &CaseRef) -> SealedReporterIdentity {
    let identity = x25519::Identity::generate();
    SealedReporterIdentity {
        recipient: identity.to_public().to_string(),
        sealed_identity: keys
            .wrap_key
            .seal_identity(&associated_data(keys, case), &identity),
    }
}

/// Opens a sealed reporter identity of `case`.
pub fn open_reporter_identity(
    keys: &ReceiptKeys,
    case: &CaseRef,
    sealed_identity: &[u8],
) -> Result<x25519::Identity, CryptoError> {
    keys.wrap_key
        .open_identity(&associated_data(keys, case), sealed_identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    const CHEAP: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn the_same_receipt_finds_and_opens_the_same_identity() {
        let salt = InstanceSalt([7; 32]);
        let receipt = ReceiptCode::generate();
        let keys = derive_receipt_keys(&receipt, &salt, &CHEAP).unwrap();
        let case = CaseRef::generate();
        let sealed = seal_new_reporter_identity(&keys, &case);

        let typed_again = ReceiptCode::parse(receipt.formatted().expose_secret()).unwrap();
        let again = derive_receipt_keys(&typed_again, &salt, &CHEAP).unwrap();
        assert_eq!(again.lookup_id, keys.lookup_id);
        let identity = open_reporter_identity(&again, &case, &sealed.sealed_identity).unwrap();
        assert_eq!(identity.to_public().to_string(), sealed.recipient);
    }

    #[test]
    fn a_sealed_identity_opens_only_for_its_own_case() {
        let keys =
            derive_receipt_keys(&ReceiptCode::generate(), &InstanceSalt([3; 32]), &CHEAP).unwrap();
        let case = CaseRef::generate();
        let sealed = seal_new_reporter_identity(&keys, &case);
        let other = CaseRef::generate();
        assert!(open_reporter_identity(&keys, &other, &sealed.sealed_identity).is_err());
        assert!(open_reporter_identity(&keys, &case, &sealed.sealed_identity).is_ok());
    }

    #[test]
    fn another_receipt_or_salt_finds_nothing() {
        let receipt = ReceiptCode::generate();
        let keys = derive_receipt_keys(&receipt, &InstanceSalt([7; 32]), &CHEAP).unwrap();
        let other_salt = derive_receipt_keys(&receipt, &InstanceSalt([8; 32]), &CHEAP).unwrap();
        let other_receipt =
            derive_receipt_keys(&ReceiptCode::generate(), &InstanceSalt([7; 32]), &CHEAP).unwrap();
        assert_ne!(keys.lookup_id, other_salt.lookup_id);
        assert_ne!(keys.lookup_id, other_receipt.lookup_id);
        let case = CaseRef::generate();
        let sealed = seal_new_reporter_identity(&keys, &case);
        assert!(open_reporter_identity(&other_receipt, &case, &sealed.sealed_identity).is_err());
    }

    #[test]
    fn the_lookup_id_is_not_the_wrap_key() {
        let keys =
            derive_receipt_keys(&ReceiptCode::generate(), &InstanceSalt([1; 32]), &CHEAP).unwrap();
        assert_ne!(keys.lookup_id, keys.wrap_key.expose_bytes());
    }
}
