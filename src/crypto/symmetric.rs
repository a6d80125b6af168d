//! XChaCha20-Poly1305 under a 32-byte key, for the few things sealed to a derived key rather than
//! to an age recipient: the reporter identity (under the receipt wrap key) and the idempotent
//! answer (under a key derived from the Idempotency-Key). Format: `0x01 ‖ nonce(24) ‖ ciphertext`.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::{RngCore, rngs::OsRng};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::CryptoError;

const FORMAT_VERSION: u8 = 1;
const NONCE_LENGTH: usize = 24;

/// A 32-byte symmetric key. Not `Debug`, not `Clone`; zeroized on drop.
pub struct SymmetricKey(Zeroizing<[u8; 32]>);

impl SymmetricKey {
    /// Expands `input_key` with HKDF-SHA256 (RFC 5869) under a purpose label.
    pub fn derive(input_key: &[u8], salt: &[u8], purpose: &str) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(salt), input_key)
            .expand(purpose.as_bytes(), key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(key)
    }

    /// Seals `plaintext`, authenticating `associated_data` with it. A fresh random 192-bit nonce
    /// per message is safe for XChaCha20 (draft-irtf-cfrg-xchacha).
    pub fn seal(&self, associated_data: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LENGTH];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut sealed = Vec::with_capacity(1 + NONCE_LENGTH + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens what [`SymmetricKey::seal`] produced with the same associated data.
    pub fn open(
        &self,
        associated_data: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (version, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
        if *version != FORMAT_VERSION || rest.len() < NONCE_LENGTH {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LENGTH);
        let nonce: [u8; NONCE_LENGTH] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Undecryptable)
    }

    /// Seals an age X25519 identity (its `AGE-SECRET-KEY-1…` text) under this key: the one way
    /// reporter, reviewer and session copies of an identity are stored.
    pub fn seal_identity(
        &self,
        associated_data: &[u8],
        identity: &age::x25519::Identity,
    ) -> Vec<u8> {
        use age::secrecy::ExposeSecret;
        let secret = identity.to_string();
        self.seal(associated_data, secret.expose_secret().as_bytes())
    }

    /// Opens what [`SymmetricKey::seal_identity`] produced with the same associated data.
    pub fn open_identity(
        &self,
        associated_data: &[u8],
        sealed: &[u8],
    ) -> Result<age::x25519::Identity, CryptoError> {
        let plaintext = self.open(associated_data, sealed)?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| CryptoError::Malformed)?;
        text.parse().map_err(|_| CryptoError::Malformed)
    }

    /// The raw key bytes. Only for values that are derived as keys but used as public ids (the
    /// receipt lookup id), never for a key that seals anything.
    pub fn expose_bytes(&self) -> [u8; 32] {
        *self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(self.0.as_ref()).expect("the key is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn another_key_or_other_associated_data_cannot_open() {
        let key = SymmetricKey::derive(b"input", b"salt", "purpose/a");
        let other = SymmetricKey::derive(b"input", b"salt", "purpose/b");
        let sealed = key.seal(b"row-1", b"secret");
        assert_eq!(&**key.open(b"row-1", &sealed).unwrap(), b"secret");
        assert!(matches!(
            other.open(b"row-1", &sealed),
            Err(CryptoError::Undecryptable)
        ));
        assert!(matches!(
            key.open(b"row-2", &sealed),
            Err(CryptoError::Undecryptable)
        ));
    }

    #[test]
    fn truncated_or_versionless_input_is_malformed() {
        let key = SymmetricKey::derive(b"input", b"salt", "purpose");
        assert!(matches!(key.open(b"", &[]), Err(CryptoError::Malformed)));
        assert!(matches!(
            key.open(b"", &[2; 60]),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(
            key.open(b"", &[1; 10]),
            Err(CryptoError::Malformed)
        ));
    }

    proptest! {
        #[test]
        fn sealing_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let key = SymmetricKey::derive(b"input", b"salt", "purpose");
            let sealed = key.seal(b"ad", &plaintext);
            prop_assert_eq!(&**key.open(b"ad", &sealed).unwrap(), plaintext.as_slice());
        }
    }
}
