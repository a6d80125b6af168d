//! Sealed sessions (DESIGN §3, "Sessions"): the token is 32 random bytes that only the client
//! holds. The database keeps SHA-256 of it to find the row, and the reviewer identity sealed under
//! a key HKDF derives from it, so that any node can serve the session and a copy of the table
//! without live tokens opens nothing.

use age::secrecy::{ExposeSecret, SecretBox, SecretString};
use age::x25519;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{RngCore, rngs::OsRng};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::CryptoError;
use super::symmetric::SymmetricKey;

const LOOKUP_PURPOSE: &str = "incident-vault/session/lookup/v1";
const SEAL_PURPOSE: &str = "incident-vault/session/seal/v1";
/// Prefix of the associated data of a session-sealed identity; the lookup hash and the reviewer
/// id follow it.
const IDENTITY_PURPOSE: &str = "incident-vault/session/identity/v1:";

/// Bytes of randomness in a token: 256 bits, beyond any online or offline guessing.
pub const SESSION_TOKEN_BYTES: usize = 32;
/// Length of a token's text form: 32 bytes in unpadded base64url.
pub const SESSION_TOKEN_TEXT_LENGTH: usize = 43;

/// A session token. Never `Debug`, `Clone` or `Display`: whoever holds it is logged in.
pub struct SessionToken(SecretBox<[u8; SESSION_TOKEN_BYTES]>);

/// The cookie or bearer value is not a session token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the session token is malformed")]
pub struct InvalidSessionToken;

impl SessionToken {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(
            |bytes: &mut [u8; SESSION_TOKEN_BYTES]| OsRng.fill_bytes(bytes),
        ))
    }

    /// The token as the client carries it (cookie value or bearer): unpadded base64url
    /// (RFC 4648 §5), 43 characters, all of them safe in a cookie without quoting.
    pub fn to_text(&self) -> SecretString {
        let mut text = Zeroizing::new(String::with_capacity(SESSION_TOKEN_TEXT_LENGTH));
        URL_SAFE_NO_PAD.encode_string(self.0.expose_secret(), &mut text);
        SecretString::from(text.as_str())
    }

    /// Parses [`SessionToken::to_text`]'s form. Only the canonical encoding is accepted, so one
    /// token has one spelling.
    pub fn parse(input: &str) -> Result<Self, InvalidSessionToken> {
        if input.len() != SESSION_TOKEN_TEXT_LENGTH {
            return Err(InvalidSessionToken);
        }
        let mut bytes = Zeroizing::new([0u8; SESSION_TOKEN_BYTES]);
        let decoded = URL_SAFE_NO_PAD
            .decode_slice(input, bytes.as_mut())
            .map_err(|_| InvalidSessionToken)?;
        if decoded != SESSION_TOKEN_BYTES {
            return Err(InvalidSessionToken);
        }
        Ok(Self(SecretBox::init_with_mut(
            |target: &mut [u8; SESSION_TOKEN_BYTES]| target.copy_from_slice(bytes.as_ref()),
        )))
    }

    /// What the database stores to find the session: SHA-256 over a purpose label and the token.
    /// Without the token it opens nothing.
    pub fn lookup_hash(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(LOOKUP_PURPOSE.as_bytes())
            .chain_update(self.0.expose_secret())
            .finalize()
            .into()
    }

    /// The key that seals the reviewer identity for this session: HKDF-SHA256 of the token.
    pub fn session_key(&self) -> SymmetricKey {
        SymmetricKey::derive(self.0.expose_secret(), &[], SEAL_PURPOSE)
    }
}

/// Associated data of a session-sealed identity: a purpose label, the token's lookup hash and the
/// reviewer id. A sealed identity moved to another session row, or a row whose reviewer id was
/// rewritten, does not open.
fn session_associated_data(lookup_hash: &[u8; 32], reviewer_id: &str) -> Vec<u8> {
    [
        IDENTITY_PURPOSE.as_bytes(),
        lookup_hash.as_slice(),
        reviewer_id.as_bytes(),
    ]
    .concat()
}

/// Seals a reviewer identity for one session, at login.
pub fn seal_identity_for_session(
    identity: &x25519::Identity,
    token: &SessionToken,
    reviewer_id: &str,
) -> Vec<u8> {
    token.session_key().seal_identity(
        &session_associated_data(&token.lookup_hash(), reviewer_id),
        identity,
    )
}

/// Opens the identity sealed for this session, on each authenticated request.
pub fn open_identity_for_session(
    sealed: &[u8],
    token: &SessionToken,
    reviewer_id: &str,
) -> Result<x25519::Identity, CryptoError> {
    token.session_key().open_identity(
        &session_associated_data(&token.lookup_hash(), reviewer_id),
        sealed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_token_opens_the_identity_sealed_for_it() {
        // Arrange
        let token = SessionToken::generate();
        let identity = x25519::Identity::generate();
        let sealed = seal_identity_for_session(&identity, &token, "reviewer-1");

        // Act: the client sends the token back as text on the next request.
        let presented = SessionToken::parse(token.to_text().expose_secret()).unwrap();
        let opened = open_identity_for_session(&sealed, &presented, "reviewer-1").unwrap();

        // Assert
        assert_eq!(presented.lookup_hash(), token.lookup_hash());
        assert_eq!(
            opened.to_public().to_string(),
            identity.to_public().to_string()
        );
    }

    #[test]
    fn another_token_cannot_open_a_sealed_identity() {
        let sealed = seal_identity_for_session(
            &x25519::Identity::generate(),
            &SessionToken::generate(),
            "reviewer-1",
        );
        assert!(matches!(
            open_identity_for_session(&sealed, &SessionToken::generate(), "reviewer-1"),
            Err(CryptoError::Undecryptable)
        ));
    }

    #[test]
    fn a_copied_sealed_row_without_the_token_opens_nothing() {
        // Arrange: what a database dump holds is the lookup hash and the sealed identity.
        let token = SessionToken::generate();
        let identity = x25519::Identity::generate();
        let stored_hash = token.lookup_hash();
        let stored_sealed = seal_identity_for_session(&identity, &token, "reviewer-1");
        let identity_text = identity.to_string();

        // Act: derive keys from everything stored, as an attacker holding the dump could.
        let from_hash = SymmetricKey::derive(&stored_hash, &[], SEAL_PURPOSE);
        let attempt = from_hash.open(
            &session_associated_data(&stored_hash, "reviewer-1"),
            &stored_sealed,
        );

        // Assert
        assert!(matches!(attempt, Err(CryptoError::Undecryptable)));
        assert_ne!(stored_hash, token.session_key().expose_bytes());
        let secret_bytes = identity_text.expose_secret().as_bytes();
        assert!(
            !stored_sealed
                .windows(secret_bytes.len())
                .any(|window| window == secret_bytes)
        );
    }

    #[test]
    fn a_sealed_identity_moved_to_another_reviewer_does_not_open() {
        let token = SessionToken::generate();
        let sealed = seal_identity_for_session(&x25519::Identity::generate(), &token, "reviewer-1");
        assert!(matches!(
            open_identity_for_session(&sealed, &token, "reviewer-2"),
            Err(CryptoError::Undecryptable)
        ));
    }

    #[test]
    fn the_lookup_hash_is_domain_separated_from_a_bare_sha256() {
        let token = SessionToken::generate();
        let bare: [u8; 32] = Sha256::digest(token.0.expose_secret()).into();
        assert_ne!(token.lookup_hash(), bare);
        assert_ne!(token.lookup_hash(), token.session_key().expose_bytes());
    }

    #[test]
    fn a_token_is_43_url_safe_characters() {
        let text = SessionToken::generate().to_text();
        let text = text.expose_secret();
        assert_eq!(text.len(), SESSION_TOKEN_TEXT_LENGTH);
        assert!(
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        );
    }

    #[test]
    fn two_tokens_differ() {
        assert_ne!(
            SessionToken::generate().lookup_hash(),
            SessionToken::generate().lookup_hash()
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = SessionToken::generate().to_text();
        let good = good.expose_secret();
        let padded = format!("{good}=");
        let standard_alphabet = format!("{}+", &good[..42]);
        // The last character of 32 bytes carries 2 unused bits: any other value there is a
        // non-canonical spelling of the same token.
        let non_canonical = format!("{}B", "A".repeat(42));
        let non_ascii = format!("{}A", "\u{e9}".repeat(21));
        for bad in [
            "",
            &good[..42],
            padded.as_str(),
            standard_alphabet.as_str(),
            non_canonical.as_str(),
            non_ascii.as_str(),
        ] {
            assert_eq!(
                SessionToken::parse(bad).err(),
                Some(InvalidSessionToken),
                "{bad:?}"
            );
        }
        assert!(SessionToken::parse(&format!("{}A", "A".repeat(42))).is_ok());
    }

    #[test]
    fn garbage_in_place_of_a_sealed_identity_is_refused() {
        let token = SessionToken::generate();
        assert!(matches!(
            open_identity_for_session(&[1, 2, 3], &token, "reviewer-1"),
            Err(CryptoError::Malformed)
        ));
    }

    proptest! {
        #[test]
        fn the_text_form_round_trips(bytes in any::<[u8; 32]>()) {
            let token = SessionToken(SecretBox::new(Box::new(bytes)));
            let text = token.to_text();
            let parsed = SessionToken::parse(text.expose_secret()).unwrap();
            prop_assert_eq!(parsed.0.expose_secret(), &bytes);
            prop_assert_eq!(parsed.lookup_hash(), token.lookup_hash());
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(input in "\\PC{0,60}") {
            let _ = SessionToken::parse(&input);
        }

        #[test]
        fn sealing_for_a_session_round_trips_for_any_reviewer_id(reviewer_id in "\\PC{0,64}") {
            let token = SessionToken::generate();
            let identity = x25519::Identity::generate();
            let sealed = seal_identity_for_session(&identity, &token, &reviewer_id);
            let opened = open_identity_for_session(&sealed, &token, &reviewer_id).unwrap();
            prop_assert_eq!(opened.to_public().to_string(), identity.to_public().to_string());
        }
    }
}
