//! Reviewer keys (DESIGN §3, "Reviewer identity"): one argon2id run over the password with the
//! reviewer's own salt gives a 32-byte master, and HKDF-SHA256 splits it into a login verifier,
//! stored in clear, and a wrap key that seals the reviewer's age X25519 identity with
//! XChaCha20-Poly1305. A personal recovery code seals a second copy the same way.

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use rand::{RngCore, rngs::OsRng};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::CryptoError;
use super::kdf::Argon2Params;
use super::symmetric::SymmetricKey;

const VERIFIER_PURPOSE: &str = "incident-vault/reviewer/verifier/v1";
const WRAP_PURPOSE: &str = "incident-vault/reviewer/wrap/v1";
const RECOVERY_WRAP_PURPOSE: &str = "incident-vault/reviewer/recovery-wrap/v1";
/// Prefix of the associated data of a sealed identity; the reviewer id follows it.
const IDENTITY_PURPOSE: &str = "incident-vault/reviewer/identity/v1:";

/// Length of a reviewer's KDF salt: 128 bits, RFC 9106 §3.1's recommendation.
pub const SALT_LENGTH: usize = 16;

/// What a password (or recovery code) derives. Not `Debug`, not `Clone`.
pub struct ReviewerKeys {
    /// Stored in clear and compared at login; reveals nothing about the wrap key (HKDF outputs
    /// under distinct labels are independent).
    pub login_verifier: [u8; 32],
    /// Seals the reviewer identity and the TOTP secret.
    pub wrap_key: SymmetricKey,
}

/// Runs the reviewer KDF. Slow (one argon2id run): call it on the crypto pool (`crypto::pool`).
pub fn derive_reviewer_keys(
    password: &[u8],
    salt: &[u8],
    params: &Argon2Params,
) -> Result<ReviewerKeys, CryptoError> {
    let master = params.derive(password, salt)?;
    let verifier = SymmetricKey::derive(master.as_ref(), &[], VERIFIER_PURPOSE);
    Ok(ReviewerKeys {
        login_verifier: verifier.expose_bytes(),
        wrap_key: SymmetricKey::derive(master.as_ref(), &[], WRAP_PURPOSE),
    })
}

/// A fresh random salt for a reviewer's password or recovery code.
pub fn new_salt() -> [u8; SALT_LENGTH] {
    let mut salt = [0u8; SALT_LENGTH];
    OsRng.fill_bytes(&mut salt);
    salt
}

/// Compares a stored verifier with a freshly derived one in constant time. A stored value of the
/// wrong length never matches.
pub fn verifier_matches(expected: &[u8], candidate: &[u8; 32]) -> bool {
    expected.ct_eq(candidate.as_slice()).into()
}

/// Associated data of a sealed identity: a purpose label and the reviewer id, so that a sealed
/// identity copied into another reviewer's row does not open there.
fn identity_associated_data(reviewer_id: &str) -> Vec<u8> {
    [IDENTITY_PURPOSE.as_bytes(), reviewer_id.as_bytes()].concat()
}

/// Seals a reviewer's age identity under a wrap key, bound to `reviewer_id`.
pub fn seal_identity(
    identity: &x25519::Identity,
    wrap_key: &SymmetricKey,
    reviewer_id: &str,
) -> Vec<u8> {
    wrap_key.seal_identity(&identity_associated_data(reviewer_id), identity)
}

/// Opens what [`seal_identity`] produced for the same reviewer id.
pub fn open_identity(
    sealed: &[u8],
    wrap_key: &SymmetricKey,
    reviewer_id: &str,
) -> Result<x25519::Identity, CryptoError> {
    wrap_key.open_identity(&identity_associated_data(reviewer_id), sealed)
}

/// Crockford's base32 alphabet: no I, L, O or U, so that nothing reads as another character.
const CROCKFORD_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a recovery code: 25 × 5 bits = 125 bits.
pub const RECOVERY_CODE_CHARACTERS: usize = 25;
/// Characters per shown group.
const RECOVERY_GROUP_LENGTH: usize = 5;

/// A personal recovery code, shown once at enrolment: `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX` in
/// Crockford base32 (about 125 bits). Never `Debug`, `Clone` or `Display`.
pub struct RecoveryCode(SecretString);

/// The input is not a recovery code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a recovery code is 25 letters and digits, like ABCDE-FGHJK-MNPQR-STVWX-YZ012")]
pub struct InvalidRecoveryCode;

impl RecoveryCode {
    /// A fresh code of uniformly random characters from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut random = Zeroizing::new([0u8; RECOVERY_CODE_CHARACTERS]);
        OsRng.fill_bytes(random.as_mut());
        // 256 is a multiple of 32, so masking to five bits keeps every character uniform.
        let code: Zeroizing<String> = Zeroizing::new(
            random
                .iter()
                .map(|byte| char::from(CROCKFORD_ALPHABET[usize::from(byte & 0x1f)]))
                .collect(),
        );
        Self(SecretString::from(code.as_str()))
    }

    /// Parses a code as typed: any case, with or without spaces and hyphens. Following
    /// Crockford, `I` and `L` read as `1` and `O` as `0`.
    pub fn parse(input: &str) -> Result<Self, InvalidRecoveryCode> {
        let mut code = Zeroizing::new(String::with_capacity(RECOVERY_CODE_CHARACTERS));
        for character in input.chars() {
            let canonical = match character.to_ascii_uppercase() {
                ' ' | '-' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                upper
                    if u8::try_from(upper).is_ok_and(|byte| CROCKFORD_ALPHABET.contains(&byte)) =>
                {
                    upper
                }
                _ => return Err(InvalidRecoveryCode),
            };
            if code.len() == RECOVERY_CODE_CHARACTERS {
                return Err(InvalidRecoveryCode);
            }
            code.push(canonical);
        }
        if code.len() != RECOVERY_CODE_CHARACTERS {
            return Err(InvalidRecoveryCode);
        }
        Ok(Self(SecretString::from(code.as_str())))
    }

    /// The shown form, five groups of five joined by hyphens.
    pub fn formatted(&self) -> SecretString {
        let code = self.0.expose_secret();
        let grouped: Zeroizing<String> = Zeroizing::new(
            code.as_bytes()
                .chunks(RECOVERY_GROUP_LENGTH)
                .map(|group| std::str::from_utf8(group).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-"),
        );
        SecretString::from(grouped.as_str())
    }

    /// The normalised code (25 upper-case characters, no separators): the input of the KDF.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

/// Derives the key that seals the recovery copy of a reviewer identity: argon2id over the
/// normalised code with its own salt, then HKDF under a label of its own. Slow: call it on the
/// crypto pool (`crypto::pool`).
pub fn derive_recovery_wrap_key(
    code: &RecoveryCode,
    salt: &[u8],
    params: &Argon2Params,
) -> Result<SymmetricKey, CryptoError> {
    let master = params.derive(code.as_bytes(), salt)?;
    Ok(SymmetricKey::derive(
        master.as_ref(),
        &[],
        RECOVERY_WRAP_PURPOSE,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHEAP: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn the_same_password_and_salt_give_the_same_verifier_and_open_the_identity() {
        // Arrange
        let salt = new_salt();
        let keys = derive_reviewer_keys(b"tulip-oxen-97", &salt, &CHEAP).unwrap();
        let identity = x25519::Identity::generate();
        let sealed = seal_identity(&identity, &keys.wrap_key, "reviewer-1");

        // Act
        let again = derive_reviewer_keys(b"tulip-oxen-97", &salt, &CHEAP).unwrap();
        let opened = open_identity(&sealed, &again.wrap_key, "reviewer-1").unwrap();

        // Assert
        assert!(verifier_matches(
            &keys.login_verifier,
            &again.login_verifier
        ));
        assert_eq!(
            opened.to_public().to_string(),
            identity.to_public().to_string()
        );
    }

    #[test]
    fn a_wrong_password_or_salt_neither_matches_the_verifier_nor_opens_the_identity() {
        let salt = new_salt();
        let keys = derive_reviewer_keys(b"tulip-oxen-97", &salt, &CHEAP).unwrap();
        let sealed = seal_identity(&x25519::Identity::generate(), &keys.wrap_key, "reviewer-1");

        let wrong_password = derive_reviewer_keys(b"tulip-oxen-98", &salt, &CHEAP).unwrap();
        let wrong_salt = derive_reviewer_keys(b"tulip-oxen-97", &new_salt(), &CHEAP).unwrap();

        for wrong in [wrong_password, wrong_salt] {
            assert!(!verifier_matches(
                &keys.login_verifier,
                &wrong.login_verifier
            ));
            assert!(matches!(
                open_identity(&sealed, &wrong.wrap_key, "reviewer-1"),
                Err(CryptoError::Undecryptable)
            ));
        }
    }

    #[test]
    fn the_verifier_is_not_the_wrap_key() {
        let keys = derive_reviewer_keys(b"tulip-oxen-97", &new_salt(), &CHEAP).unwrap();
        assert_ne!(keys.login_verifier, keys.wrap_key.expose_bytes());
    }

    #[test]
    fn a_sealed_identity_moved_to_another_reviewer_does_not_open() {
        let keys = derive_reviewer_keys(b"tulip-oxen-97", &new_salt(), &CHEAP).unwrap();
        let sealed = seal_identity(&x25519::Identity::generate(), &keys.wrap_key, "reviewer-1");
        assert!(matches!(
            open_identity(&sealed, &keys.wrap_key, "reviewer-2"),
            Err(CryptoError::Undecryptable)
        ));
    }

    #[test]
    fn the_purpose_label_is_part_of_the_associated_data() {
        let keys = derive_reviewer_keys(b"tulip-oxen-97", &new_salt(), &CHEAP).unwrap();
        let sealed = seal_identity(&x25519::Identity::generate(), &keys.wrap_key, "reviewer-1");
        assert!(keys.wrap_key.open(b"reviewer-1", &sealed).is_err());
    }

    #[test]
    fn a_verifier_of_the_wrong_length_never_matches() {
        let candidate = [7u8; 32];
        assert!(verifier_matches(&[7u8; 32], &candidate));
        assert!(!verifier_matches(&[7u8; 31], &candidate));
        assert!(!verifier_matches(&[7u8; 33], &candidate));
        assert!(!verifier_matches(&[], &candidate));
    }

    #[test]
    fn parameters_the_kdf_refuses_are_a_kdf_error() {
        let refused = Argon2Params {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        };
        assert!(matches!(
            derive_reviewer_keys(b"tulip-oxen-97", &new_salt(), &refused),
            Err(CryptoError::Kdf)
        ));
        // argon2 wants at least 8 bytes of salt.
        assert!(matches!(
            derive_reviewer_keys(b"tulip-oxen-97", b"short", &CHEAP),
            Err(CryptoError::Kdf)
        ));
    }

    #[test]
    fn two_salts_differ() {
        assert_ne!(new_salt(), new_salt());
    }

    #[test]
    fn garbage_in_place_of_a_sealed_identity_is_refused() {
        let keys = derive_reviewer_keys(b"tulip-oxen-97", &new_salt(), &CHEAP).unwrap();
        assert!(matches!(
            open_identity(&[], &keys.wrap_key, "reviewer-1"),
            Err(CryptoError::Malformed)
        ));
        // Authentic ciphertext whose plaintext is not an age identity.
        let not_an_identity = keys.wrap_key.seal(
            &identity_associated_data("reviewer-1"),
            b"AGE-SECRET-KEY-NOPE",
        );
        assert!(matches!(
            open_identity(&not_an_identity, &keys.wrap_key, "reviewer-1"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn a_generated_recovery_code_is_five_groups_of_five_crockford_characters() {
        let code = RecoveryCode::generate();
        let shown = code.formatted();
        let shown = shown.expose_secret();
        assert_eq!(shown.len(), 29);
        assert!(shown.split('-').all(|group| {
            group.len() == RECOVERY_GROUP_LENGTH
                && group.bytes().all(|byte| CROCKFORD_ALPHABET.contains(&byte))
        }));
        assert_eq!(code.as_bytes().len(), RECOVERY_CODE_CHARACTERS);
    }

    #[test]
    fn two_recovery_codes_differ() {
        assert_ne!(
            RecoveryCode::generate().as_bytes(),
            RecoveryCode::generate().as_bytes()
        );
    }

    #[test]
    fn a_recovery_code_parses_in_any_case_with_or_without_separators() {
        let canonical = RecoveryCode::parse("ABCDE-FGHJK-MNPQR-STVWX-YZ012").unwrap();
        for typed in [
            "abcde-fghjk-mnpqr-stvwx-yz012",
            "ABCDEFGHJKMNPQRSTVWXYZ012",
            "abcde fghjk mnpqr stvwx yz012",
            " AbCdE-fGhJk mnpqrstvwx-YZ012 ",
        ] {
            assert_eq!(
                RecoveryCode::parse(typed).unwrap().as_bytes(),
                canonical.as_bytes(),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn look_alike_letters_read_as_the_digits_they_resemble() {
        let typed = RecoveryCode::parse("ILOil-o0000-00000-00000-00000").unwrap();
        assert_eq!(typed.as_bytes(), b"1101100000000000000000000");
    }

    #[test]
    fn malformed_recovery_codes_are_refused() {
        for bad in [
            "",
            "ABCDE-FGHJK-MNPQR-STVWX-YZ01",
            "ABCDE-FGHJK-MNPQR-STVWX-YZ0123",
            "ABCDE-FGHJK-MNPQR-STVWX-YZ01U",
            "ABCDE_FGHJK_MNPQR_STVWX_YZ012",
            "ABCDE-FGHJK-MNPQR-STVWX-YZ01\u{c9}",
        ] {
            assert_eq!(
                RecoveryCode::parse(bad).err(),
                Some(InvalidRecoveryCode),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_recovery_code_opens_its_own_copy_and_nothing_else() {
        // Arrange
        let identity = x25519::Identity::generate();
        let code = RecoveryCode::generate();
        let recovery_salt = new_salt();
        let recovery_key = derive_recovery_wrap_key(&code, &recovery_salt, &CHEAP).unwrap();
        let recovery_copy = seal_identity(&identity, &recovery_key, "reviewer-1");
        let password_salt = new_salt();
        let password_keys = derive_reviewer_keys(code.as_bytes(), &password_salt, &CHEAP).unwrap();
        let password_copy = seal_identity(&identity, &password_keys.wrap_key, "reviewer-1");

        // Act
        let typed = RecoveryCode::parse(code.formatted().expose_secret()).unwrap();
        let again = derive_recovery_wrap_key(&typed, &recovery_salt, &CHEAP).unwrap();

        // Assert
        let opened = open_identity(&recovery_copy, &again, "reviewer-1").unwrap();
        assert_eq!(
            opened.to_public().to_string(),
            identity.to_public().to_string()
        );
        // Even the same secret and salt under the password label is another key.
        let same_salt_as_password =
            derive_recovery_wrap_key(&typed, &password_salt, &CHEAP).unwrap();
        assert!(open_identity(&password_copy, &same_salt_as_password, "reviewer-1").is_err());
        let other_code =
            derive_recovery_wrap_key(&RecoveryCode::generate(), &recovery_salt, &CHEAP).unwrap();
        assert!(open_identity(&recovery_copy, &other_code, "reviewer-1").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn sealing_an_identity_round_trips_for_any_reviewer_id(reviewer_id in "\\PC{0,64}") {
            let keys = derive_reviewer_keys(b"tulip-oxen-97", b"salt-salt-salt-1", &CHEAP).unwrap();
            let identity = x25519::Identity::generate();
            let sealed = seal_identity(&identity, &keys.wrap_key, &reviewer_id);
            let opened = open_identity(&sealed, &keys.wrap_key, &reviewer_id).unwrap();
            prop_assert_eq!(opened.to_public().to_string(), identity.to_public().to_string());
        }
    }

    proptest! {
        #[test]
        fn the_shown_recovery_code_parses_back_to_the_same_code(code in "[0-9A-HJKMNP-TV-Z]{25}") {
            let parsed = RecoveryCode::parse(&code).unwrap();
            let again = RecoveryCode::parse(parsed.formatted().expose_secret()).unwrap();
            prop_assert_eq!(again.as_bytes(), code.as_bytes());
            let lower = RecoveryCode::parse(&code.to_lowercase()).unwrap();
            prop_assert_eq!(lower.as_bytes(), code.as_bytes());
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(input in "\\PC{0,60}") {
            if let Ok(code) = RecoveryCode::parse(&input) {
                prop_assert_eq!(code.as_bytes().len(), RECOVERY_CODE_CHARACTERS);
            }
        }
    }
}
