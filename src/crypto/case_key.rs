//! Per-case keys and grants (DESIGN §3, "Case key" and "Grant format").
//!
//! A grant's plaintext is a standard age identity file: `#` comment lines name the case and the
//! key epoch, then the `AGE-SECRET-KEY-1…` line. The reference `age -d -i grant.txt` uses it as it
//! is, and [`open_grant`] refuses one whose comments name another case or epoch.

use std::io::Write;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::x25519;
use zeroize::Zeroizing;

use super::{CryptoError, encrypt_to};
use crate::domain::CaseRef;

const GRANT_HEADER: &str = "# incident-vault case grant";

/// The X25519 identity of one case at one key epoch. Not `Debug`, not `Clone`; the inner age
/// identity zeroizes its secret on drop.
pub struct CaseIdentity(x25519::Identity);

/// The public half of a [`CaseIdentity`], stored in the `cases` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseRecipient(x25519::Recipient);

impl CaseIdentity {
    /// A fresh identity from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(x25519::Identity::generate())
    }

    /// The recipient that seals content for this case.
    pub fn recipient(&self) -> CaseRecipient {
        CaseRecipient(self.0.to_public())
    }

    /// The identity as an age identity, for opening envelopes.
    pub fn as_age_identity(&self) -> &dyn age::Identity {
        &self.0
    }
}

impl CaseRecipient {
    /// Parses an `age1…` recipient string as stored.
    pub fn parse(encoded: &str) -> Result<Self, CryptoError> {
        x25519::Recipient::from_str(encoded)
            .map(Self)
            .map_err(|_| CryptoError::Malformed)
    }

    /// The recipient as an age recipient, for sealing.
    pub fn as_age_recipient(&self) -> &dyn age::Recipient {
        &self.0
    }
}

impl std::fmt::Display for CaseRecipient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(formatter)
    }
}

/// Seals the case identity for one grantee (a reviewer or the escrow key).
pub fn seal_grant(
    identity: &CaseIdentity,
    case: &CaseRef,
    epoch: u32,
    grantee: &dyn age::Recipient,
) -> Result<Vec<u8>, CryptoError> {
    let secret = identity.0.to_string();
    let mut plaintext = Zeroizing::new(Vec::with_capacity(160));
    write!(
        plaintext,
        "{GRANT_HEADER}\n# case: {case}\n# epoch: {epoch}\n{}\n",
        secret.expose_secret()
    )
    .map_err(|_| CryptoError::Malformed)?;
    encrypt_to(&[grantee], &plaintext)
}

/// Opens a grant with one of `identities`, and checks that it is the grant of `case` at `epoch`.
///
/// Returns [`CryptoError::NotForUs`] when none of the identities is a recipient, and
/// [`CryptoError::BindingMismatch`] when it opens but names another case or epoch: a ciphertext
/// moved between rows.
pub fn open_grant(
    ciphertext: &[u8],
    identities: &[&dyn age::Identity],
    case: &CaseRef,
    epoch: u32,
) -> Result<CaseIdentity, CryptoError> {
    let plaintext = super::decrypt_with(ciphertext, identities)?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| CryptoError::Malformed)?;
    parse_grant_plaintext(text, case, epoch)
}

/// Parses and checks a grant's plaintext (an age identity file with binding comments).
pub fn parse_grant_plaintext(
    text: &str,
    case: &CaseRef,
    epoch: u32,
) -> Result<CaseIdentity, CryptoError> {
    let mut lines = text.lines();
    if lines.next() != Some(GRANT_HEADER) {
        return Err(CryptoError::Malformed);
    }
    let mut named_case = None;
    let mut named_epoch = None;
    let mut secret_line = None;
    for line in lines {
        // Each binding line and the key may appear once: a repeated line could otherwise
        // override the one that was checked.
        let slot_taken = if let Some(value) = line.strip_prefix("# case: ") {
            named_case.replace(value).is_some()
        } else if let Some(value) = line.strip_prefix("# epoch: ") {
            named_epoch
                .replace(
                    super::canonical_decimal(value)
                        .and_then(|epoch| u32::try_from(epoch).ok())
                        .ok_or(CryptoError::Malformed)?,
                )
                .is_some()
        } else if line.starts_with("AGE-SECRET-KEY-1") {
            secret_line.replace(line).is_some()
        } else if line.starts_with('#') || line.is_empty() {
            false
        } else {
            return Err(CryptoError::Malformed);
        };
        if slot_taken {
            return Err(CryptoError::Malformed);
        }
    }
    if named_case != Some(case.as_str()) || named_epoch != Some(epoch) {
        return Err(CryptoError::BindingMismatch);
    }
    let secret_line = secret_line.ok_or(CryptoError::Malformed)?;
    x25519::Identity::from_str(secret_line)
        .map(CaseIdentity)
        .map_err(|_| CryptoError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escrow() -> x25519::Identity {
        x25519::Identity::generate()
    }

    #[test]
    fn a_grant_opens_to_the_same_case_identity() {
        let escrow = escrow();
        let case = CaseRef::generate();
        let identity = CaseIdentity::generate();
        let grant = seal_grant(&identity, &case, 1, &escrow.to_public()).unwrap();
        let opened = open_grant(&grant, &[&escrow], &case, 1).unwrap();
        assert_eq!(opened.recipient(), identity.recipient());
    }

    #[test]
    fn a_grant_moved_to_another_case_or_epoch_is_refused() {
        let escrow = escrow();
        let case = CaseRef::generate();
        let grant = seal_grant(&CaseIdentity::generate(), &case, 1, &escrow.to_public()).unwrap();
        let elsewhere = CaseRef::generate();
        assert!(matches!(
            open_grant(&grant, &[&escrow], &elsewhere, 1),
            Err(CryptoError::BindingMismatch)
        ));
        assert!(matches!(
            open_grant(&grant, &[&escrow], &case, 2),
            Err(CryptoError::BindingMismatch)
        ));
    }

    #[test]
    fn a_stranger_cannot_open_a_grant() {
        let case = CaseRef::generate();
        let grant = seal_grant(&CaseIdentity::generate(), &case, 1, &escrow().to_public()).unwrap();
        assert!(matches!(
            open_grant(&grant, &[&escrow()], &case, 1),
            Err(CryptoError::NotForUs)
        ));
    }

    #[test]
    fn the_grant_plaintext_is_an_age_identity_file() {
        let case = CaseRef::generate();
        let identity = CaseIdentity::generate();
        let escrow = escrow();
        let grant = seal_grant(&identity, &case, 3, &escrow.to_public()).unwrap();
        let plaintext = age::decrypt(&escrow, &grant).unwrap();
        let file = age::IdentityFile::from_buffer(&plaintext[..]).unwrap();
        assert_eq!(file.into_identities().unwrap().len(), 1);
        let text = String::from_utf8(plaintext).unwrap();
        assert!(text.contains(&format!("# case: {case}\n# epoch: 3\n")));
    }

    #[test]
    fn stray_lines_or_two_keys_are_malformed() {
        let case = CaseRef::generate();
        let secret = x25519::Identity::generate().to_string();
        let key = secret.expose_secret();
        let header = format!("{GRANT_HEADER}\n# case: {case}\n# epoch: 1\n");
        assert!(matches!(
            parse_grant_plaintext(&format!("{header}{key}\n{key}\n"), &case, 1),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(
            parse_grant_plaintext(&format!("{header}hello\n{key}\n"), &case, 1),
            Err(CryptoError::Malformed)
        ));
        assert!(parse_grant_plaintext(&format!("{header}\n{key}\n"), &case, 1).is_ok());
        let other = CaseRef::generate();
        let repeated = format!("{header}# case: {other}\n{key}\n");
        assert!(matches!(
            parse_grant_plaintext(&repeated, &other, 1),
            Err(CryptoError::Malformed)
        ));
        let headless = format!("# case: {case}\n# epoch: 1\n{key}\n");
        assert!(matches!(
            parse_grant_plaintext(&headless, &case, 1),
            Err(CryptoError::Malformed)
        ));
        // One spelling of an epoch: the one `seal_grant` writes.
        for epoch in ["+1", "01", " 1", "1.0", "4294967296"] {
            let respelled = format!("{GRANT_HEADER}\n# case: {case}\n# epoch: {epoch}\n{key}\n");
            assert!(
                matches!(
                    parse_grant_plaintext(&respelled, &case, 1),
                    Err(CryptoError::Malformed)
                ),
                "epoch {epoch:?} was read"
            );
        }
    }
}
