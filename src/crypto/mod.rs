//! The only module that touches age, argon2 and HKDF. Everything here is synchronous; callers
//! run it through [`pool::CryptoPool`] so that slow work never blocks the event loop.

pub mod case_key;
pub mod envelope;
pub mod kdf;
pub mod pool;
pub mod receipt;
pub mod reviewer_key;
pub mod session;
pub mod symmetric;
pub mod totp;

use std::io::{Read, Write};

use zeroize::Zeroizing;

/// Why a cryptographic operation failed. Carries no key material and no plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// None of the given identities is a recipient of the ciphertext.
    #[error("none of the identities can open this ciphertext")]
    NotForUs,
    /// The ciphertext is for us but fails authentication, or is not age at all.
    #[error("the ciphertext is corrupt or was tampered with")]
    Undecryptable,
    /// The plaintext opened but is bound to another case, entry, kind or epoch.
    #[error("the ciphertext belongs to another case, entry or key epoch")]
    BindingMismatch,
    /// The plaintext does not have the expected structure.
    #[error("the plaintext is malformed")]
    Malformed,
    /// The KDF refused its parameters.
    #[error("the key derivation function refused its parameters")]
    Kdf,
    /// age refused to encrypt.
    #[error("age could not encrypt: {0}")]
    Encrypt(String),
}

/// A fresh X25519 age identity from the operating system's randomness: an escrow key, or a
/// reviewer's own key at enrolment.
pub fn generate_identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

/// Whether one of `identities` opens what is sealed to `recipient`: a probe is sealed to it and
/// opened, so that any kind of age identity is recognised, not only X25519 ones.
pub fn opens_recipient(
    identities: &[&dyn age::Identity],
    recipient: &age::x25519::Recipient,
) -> bool {
    encrypt_to(&[recipient], b"incident-vault/probe")
        .is_ok_and(|probe| decrypt_with(&probe, identities).is_ok())
}

/// Encrypts `plaintext` to every recipient as one standard age file.
pub(crate) fn encrypt_to(
    recipients: &[&dyn age::Recipient],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|error| CryptoError::Encrypt(error.to_string()))?;
    // age adds ~200 bytes of header per recipient and 16 bytes per 64 KiB chunk.
    let mut ciphertext = Vec::with_capacity(plaintext.len() + 100 + 200 * recipients.len());
    let mut writer = encryptor
        .wrap_output(&mut ciphertext)
        .map_err(|error| CryptoError::Encrypt(error.to_string()))?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|error| CryptoError::Encrypt(error.to_string()))?;
    Ok(ciphertext)
}

/// Decrypts a standard age file with the first identity that fits.
pub(crate) fn decrypt_with(
    ciphertext: &[u8],
    identities: &[&dyn age::Identity],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let decryptor =
        age::Decryptor::new_buffered(ciphertext).map_err(|_| CryptoError::Undecryptable)?;
    let mut reader =
        decryptor
            .decrypt(identities.iter().copied())
            .map_err(|error| match error {
                age::DecryptError::NoMatchingKeys => CryptoError::NotForUs,
                _ => CryptoError::Undecryptable,
            })?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader
        .read_to_end(&mut plaintext)
        .map_err(|_| CryptoError::Undecryptable)?;
    Ok(plaintext)
}

/// `text` as a number, if it is written as this code writes one: ASCII digits without a sign or a
/// leading zero. `str::parse` also takes `+4` and `004`; a number in a sealed header has one
/// spelling, so a plaintext that this code did not write is refused rather than read.
pub(crate) fn canonical_decimal(text: &str) -> Option<usize> {
    let canonical = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}
