//! Time-based one-time passwords (RFC 6238) for the second login factor, through `totp-rs`:
//! HMAC-SHA-1, 6 digits, 30-second steps, one step of clock skew either way — the parameters every
//! authenticator app supports and RFC 6238 §5.2 recommends. A code is accepted once only: the
//! caller stores the step that [`verify`] returns and passes it back next time.

use age::secrecy::{ExposeSecret, SecretBox, SecretString};
use rand::{RngCore, rngs::OsRng};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use super::CryptoError;
use super::symmetric::SymmetricKey;

/// Digits in a code.
pub const TOTP_DIGITS: usize = 6;
/// Seconds per time step (RFC 6238 §5.2).
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Steps of clock skew accepted before and after the current one (RFC 6238 §5.2).
pub const TOTP_ALLOWED_SKEW_STEPS: u64 = 1;
/// Bytes in a generated secret: 160 bits, RFC 4226 §4's recommendation for HMAC-SHA-1.
pub const TOTP_SECRET_BYTES: usize = 20;
/// Fewest bytes a secret may have: RFC 4226 §4 requires 128 bits.
const MIN_SECRET_BYTES: usize = 16;
/// Most bytes a secret may have: HMAC-SHA-1's block size, beyond which keys are hashed anyway.
const MAX_SECRET_BYTES: usize = 64;
/// Prefix of the associated data of a sealed TOTP secret; the reviewer id follows it.
const SEALED_SECRET_PURPOSE: &str = "incident-vault/reviewer/totp/v1:";

/// A reviewer's TOTP secret. Never `Debug` or `Clone`; it is stored only sealed under the
/// reviewer's wrap key.
pub struct TotpSecret(SecretBox<Vec<u8>>);

/// An issuer or account name that an otpauth URI cannot carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a TOTP issuer and account name must be non-empty and contain no ':'")]
pub struct InvalidTotpLabel;

impl TotpSecret {
    /// A fresh 160-bit secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(|bytes: &mut Vec<u8>| {
            bytes.resize(TOTP_SECRET_BYTES, 0);
            OsRng.fill_bytes(bytes);
        }))
    }

    /// A secret from its raw bytes, as opened from storage: 16 to 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(CryptoError::Malformed);
        }
        Ok(Self(SecretBox::init_with_mut(|target: &mut Vec<u8>| {
            target.extend_from_slice(bytes);
        })))
    }

    /// The raw bytes, to be sealed for storage.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The `otpauth://totp/…` URI (Key Uri Format) that an authenticator app enrols from, with the
    /// secret in base32. Secret: shown once, at enrolment.
    pub fn otpauth_uri(
        &self,
        issuer: &str,
        account: &str,
    ) -> Result<SecretString, InvalidTotpLabel> {
        if issuer.is_empty() || account.is_empty() {
            return Err(InvalidTotpLabel);
        }
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(TOTP_DIGITS as u8)
            .with_step_duration(TOTP_STEP_SECONDS)
            .with_secret(self.expose_bytes().to_vec())
            .with_issuer(Some(issuer))
            .with_account_name(account)
            .build()
            .map_err(|_| InvalidTotpLabel)?;
        let uri = Zeroizing::new(totp.to_url().map_err(|_| InvalidTotpLabel)?);
        Ok(SecretString::from(uri.as_str()))
    }
}

/// The generator for `secret` at `digits`, without skew: [`verify`] walks the window itself.
fn generator(secret: &[u8], digits: usize) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(u8::try_from(digits).ok()?)
        .with_step_duration(TOTP_STEP_SECONDS)
        .with_skew(0)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// The code for the time step that contains `unix_time`, as an authenticator app shows it.
/// Secret while it is valid: for enrolment checks and tests.
pub fn code_at(secret: &TotpSecret, unix_time: u64) -> SecretString {
    let code = generator(secret.expose_bytes(), TOTP_DIGITS)
        .map(|totp| Zeroizing::new(totp.generate(unix_time).to_string()))
        .unwrap_or_default();
    SecretString::from(code.as_str())
}

/// Checks a typed code at `unix_time`, allowing one step of skew either way. Returns the matched
/// time step only if it is later than `last_used_step`, so that a code, or an earlier one, is
/// never accepted twice (RFC 6238 §5.2). Spaces in the typed code are ignored; anything else but
/// six digits is refused. Every step of the window is computed and compared in constant time.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    unix_time: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    verify_digits(
        secret.expose_bytes(),
        TOTP_DIGITS,
        code,
        unix_time,
        last_used_step,
    )
}

/// [`verify`] at any number of digits, so that the 8-digit RFC 6238 vectors can be checked too.
fn verify_digits(
    secret: &[u8],
    digits: usize,
    code: &str,
    unix_time: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let typed: Zeroizing<String> = Zeroizing::new(code.chars().filter(|c| *c != ' ').collect());
    if typed.len() != digits || !typed.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let totp = generator(secret, digits)?;
    let current = unix_time / TOTP_STEP_SECONDS;
    let first = current.saturating_sub(TOTP_ALLOWED_SKEW_STEPS);
    let last = current.saturating_add(TOTP_ALLOWED_SKEW_STEPS);
    let mut accepted = None;
    for step in first..=last {
        let Some(step_start) = step.checked_mul(TOTP_STEP_SECONDS) else {
            continue;
        };
        let expected = Zeroizing::new(totp.generate(step_start).to_string());
        let matches: bool = expected.as_bytes().ct_eq(typed.as_bytes()).into();
        let unused = last_used_step.is_none_or(|used| step > used);
        if matches && unused && accepted.is_none() {
            accepted = Some(step);
        }
    }
    accepted
}

/// Associated data of a sealed TOTP secret: a purpose label and the reviewer id, so that a sealed
/// secret cannot be swapped with a sealed identity or moved to another reviewer's row.
fn sealed_secret_associated_data(reviewer_id: &str) -> Vec<u8> {
    [SEALED_SECRET_PURPOSE.as_bytes(), reviewer_id.as_bytes()].concat()
}

/// Seals a TOTP secret under a reviewer's wrap key, bound to `reviewer_id`.
pub fn seal_totp_secret(
    secret: &TotpSecret,
    wrap_key: &SymmetricKey,
    reviewer_id: &str,
) -> Vec<u8> {
    wrap_key.seal(
        &sealed_secret_associated_data(reviewer_id),
        secret.expose_bytes(),
    )
}

/// Opens what [`seal_totp_secret`] produced for the same reviewer id.
pub fn open_totp_secret(
    sealed: &[u8],
    wrap_key: &SymmetricKey,
    reviewer_id: &str,
) -> Result<TotpSecret, CryptoError> {
    let plaintext = wrap_key.open(&sealed_secret_associated_data(reviewer_id), sealed)?;
    TotpSecret::from_bytes(&plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The SHA-1 seed of RFC 6238 Appendix B.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// RFC 6238 Appendix B, SHA-1 rows: (T, 8-digit TOTP).
    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SECRET).unwrap()
    }

    #[test]
    fn the_rfc_6238_sha1_vectors_verify_at_eight_digits() {
        for (time, code) in RFC_VECTORS {
            assert_eq!(
                verify_digits(RFC_SECRET, 8, code, time, None),
                Some(time / 30),
                "T={time}"
            );
        }
    }

    #[test]
    fn the_rfc_6238_sha1_vectors_verify_at_six_digits_by_their_last_six() {
        let secret = rfc_secret();
        for (time, code) in RFC_VECTORS {
            let six = &code[2..];
            assert_eq!(code_at(&secret, time).expose_secret(), six, "T={time}");
            assert_eq!(
                verify(&secret, six, time, None),
                Some(time / 30),
                "T={time}"
            );
        }
        assert_eq!(verify(&secret, "287082", 59, None), Some(1));
    }

    #[test]
    fn a_code_is_accepted_once_only() {
        let secret = rfc_secret();
        let step = verify(&secret, "287082", 59, None).unwrap();
        assert_eq!(verify(&secret, "287082", 59, Some(step)), None);
        // Still refused later in the window, while the code would otherwise be valid.
        assert_eq!(verify(&secret, "287082", 75, Some(step)), None);
    }

    #[test]
    fn an_older_code_is_refused_after_a_newer_one_was_used() {
        let secret = rfc_secret();
        let time = 1_111_111_111;
        let previous = code_at(&secret, time - 30);
        let current = code_at(&secret, time);
        let used = verify(&secret, current.expose_secret(), time, None).unwrap();
        assert_eq!(
            verify(&secret, previous.expose_secret(), time, Some(used)),
            None
        );
    }

    #[test]
    fn the_next_code_is_accepted_after_the_current_one_was_used() {
        let secret = rfc_secret();
        let time = 1_111_111_111;
        let used = verify(&secret, code_at(&secret, time).expose_secret(), time, None).unwrap();
        let next = code_at(&secret, time + 30);
        assert_eq!(
            verify(&secret, next.expose_secret(), time + 30, Some(used)),
            Some(used + 1)
        );
    }

    #[test]
    fn one_step_of_skew_either_way_is_accepted() {
        let secret = rfc_secret();
        let time: u64 = 1_234_567_890;
        let step = time / 30;
        for (offset, expected_step) in [(-30_i64, step - 1), (0, step), (30, step + 1)] {
            let code_time = time.checked_add_signed(offset).unwrap();
            let code = code_at(&secret, code_time);
            assert_eq!(
                verify(&secret, code.expose_secret(), time, None),
                Some(expected_step),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn two_steps_of_skew_are_refused() {
        let secret = rfc_secret();
        let time: u64 = 1_234_567_890;
        for offset in [-60_i64, 60, -90, 90] {
            let code = code_at(&secret, time.checked_add_signed(offset).unwrap());
            // Another step's code may collide with one in the window (odds ~3 in 10^6); these
            // fixed times are checked not to.
            assert_eq!(
                verify(&secret, code.expose_secret(), time, None),
                None,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = rfc_secret();
        for bad in [
            "",
            "28708",
            "2870822",
            "28708a",
            "+87082",
            "-87082",
            "287082\n",
            "２８７０８２",
            "287.082",
            "0x1234",
        ] {
            assert_eq!(verify(&secret, bad, 59, None), None, "{bad:?}");
        }
    }

    #[test]
    fn spaces_in_a_typed_code_are_ignored() {
        let secret = rfc_secret();
        assert_eq!(verify(&secret, "287 082", 59, None), Some(1));
        assert_eq!(verify(&secret, " 287082 ", 59, None), Some(1));
    }

    #[test]
    fn times_at_the_edges_of_the_clock_do_not_panic() {
        let secret = rfc_secret();
        let at_zero = code_at(&secret, 0);
        assert_eq!(verify(&secret, at_zero.expose_secret(), 0, None), Some(0));
        let at_the_end = code_at(&secret, u64::MAX);
        assert_eq!(
            verify(&secret, at_the_end.expose_secret(), u64::MAX, None),
            Some(u64::MAX / 30)
        );
    }

    #[test]
    fn secrets_shorter_than_128_bits_or_longer_than_a_block_are_refused() {
        assert!(matches!(
            TotpSecret::from_bytes(&[7; 15]),
            Err(CryptoError::Malformed)
        ));
        assert!(TotpSecret::from_bytes(&[7; 16]).is_ok());
        assert!(TotpSecret::from_bytes(&[7; 64]).is_ok());
        assert!(matches!(
            TotpSecret::from_bytes(&[7; 65]),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn a_generated_secret_is_160_random_bits() {
        let one = TotpSecret::generate();
        let two = TotpSecret::generate();
        assert_eq!(one.expose_bytes().len(), TOTP_SECRET_BYTES);
        assert_ne!(one.expose_bytes(), two.expose_bytes());
    }

    #[test]
    fn the_otpauth_uri_names_the_issuer_and_account_and_carries_the_base32_secret() {
        let uri = rfc_secret()
            .otpauth_uri("incident-vault", "ana.lopez")
            .unwrap();
        assert_eq!(
            uri.expose_secret(),
            "otpauth://totp/incident-vault:ana.lopez?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=incident-vault"
        );
    }

    #[test]
    fn the_otpauth_uri_percent_encodes_spaces_in_the_issuer() {
        let uri = rfc_secret().otpauth_uri("UN Desk", "ana").unwrap();
        assert!(
            uri.expose_secret()
                .starts_with("otpauth://totp/UN%20Desk:ana?")
        );
    }

    #[test]
    fn an_issuer_or_account_with_a_colon_or_empty_is_refused() {
        let secret = rfc_secret();
        assert_eq!(
            secret.otpauth_uri("a:b", "ana").err(),
            Some(InvalidTotpLabel)
        );
        assert_eq!(
            secret.otpauth_uri("vault", "a:na").err(),
            Some(InvalidTotpLabel)
        );
        assert_eq!(secret.otpauth_uri("", "ana").err(), Some(InvalidTotpLabel));
        assert_eq!(
            secret.otpauth_uri("vault", "").err(),
            Some(InvalidTotpLabel)
        );
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_reviewer_under_its_key() {
        let key = SymmetricKey::derive(b"master", &[], "test/wrap");
        let other_key = SymmetricKey::derive(b"master", &[], "test/other");
        let secret = TotpSecret::generate();
        let sealed = seal_totp_secret(&secret, &key, "reviewer-1");

        let opened = open_totp_secret(&sealed, &key, "reviewer-1").unwrap();
        assert_eq!(opened.expose_bytes(), secret.expose_bytes());
        assert!(open_totp_secret(&sealed, &key, "reviewer-2").is_err());
        assert!(open_totp_secret(&sealed, &other_key, "reviewer-1").is_err());
        // Nor does it open as a sealed identity would, with the bare reviewer id.
        assert!(key.open(b"reviewer-1", &sealed).is_err());
    }

    proptest! {
        #[test]
        fn the_code_shown_now_verifies_now(
            secret in proptest::collection::vec(any::<u8>(), 16..=64),
            time in 0u64..=40_000_000_000,
        ) {
            let secret = TotpSecret::from_bytes(&secret).unwrap();
            let code = code_at(&secret, time);
            prop_assert_eq!(code.expose_secret().len(), TOTP_DIGITS);
            let step = verify(&secret, code.expose_secret(), time, None);
            // A colliding code one step earlier may match first; never a later or no step.
            prop_assert!(step.is_some_and(|step| step + 1 >= time / 30 && step <= time / 30));
            let replayed = verify(&secret, code.expose_secret(), time, Some(time / 30));
            prop_assert!(replayed.is_none_or(|step| step > time / 30));
        }

        #[test]
        fn a_sealed_secret_round_trips(secret in proptest::collection::vec(any::<u8>(), 16..=64)) {
            let key = SymmetricKey::derive(b"master", &[], "test/wrap");
            let secret = TotpSecret::from_bytes(&secret).unwrap();
            let sealed = seal_totp_secret(&secret, &key, "reviewer-1");
            let opened = open_totp_secret(&sealed, &key, "reviewer-1").unwrap();
            prop_assert_eq!(opened.expose_bytes(), secret.expose_bytes());
        }

        #[test]
        fn verifying_arbitrary_text_never_panics(code in "\\PC{0,12}", time in any::<u64>()) {
            let _ = verify(&rfc_secret(), &code, time, None);
        }
    }
}
