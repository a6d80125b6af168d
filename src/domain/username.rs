//! Reviewer usernames: the login name, and the account label in the authenticator app.

use std::fmt;

/// Shortest username accepted.
pub const MIN_USERNAME_LENGTH: usize = 3;
/// Longest username accepted.
pub const MAX_USERNAME_LENGTH: usize = 64;

/// A username: 3–64 lower-case ASCII letters, digits, '.', '_' or '-', starting with a letter.
/// The narrow alphabet rules out look-alike (homoglyph) accounts and the ':' that an otpauth
/// label cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Username(String);

/// The input is not a username.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a username is 3 to 64 lower-case letters, digits, '.', '_' or '-', and starts with a letter"
)]
pub struct InvalidUsername;

impl Username {
    /// Parses a username exactly as given: upper case is refused, not folded, so that one account
    /// has one spelling.
    pub fn parse(input: &str) -> Result<Self, InvalidUsername> {
        let well_formed = (MIN_USERNAME_LENGTH..=MAX_USERNAME_LENGTH).contains(&input.len())
            && input.starts_with(|character: char| character.is_ascii_lowercase())
            && input.bytes().all(|byte| {
                byte.is_ascii_lowercase()
                    || byte.is_ascii_digit()
                    || matches!(byte, b'.' | b'_' | b'-')
            });
        if well_formed {
            Ok(Self(input.to_owned()))
        } else {
            Err(InvalidUsername)
        }
    }

    /// The username as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_usernames_parse() {
        for good in ["ana", "j.doe", "desk_lead-2", "z99", &"a".repeat(64)] {
            let username = Username::parse(good).unwrap();
            assert_eq!(username.as_str(), good);
            assert_eq!(username.to_string(), good);
        }
    }

    #[test]
    fn too_short_or_too_long_usernames_are_refused() {
        assert_eq!(Username::parse(""), Err(InvalidUsername));
        assert_eq!(Username::parse("ab"), Err(InvalidUsername));
        assert_eq!(Username::parse(&"a".repeat(65)), Err(InvalidUsername));
    }

    #[test]
    fn a_username_must_start_with_a_letter() {
        for bad in ["1ana", ".ana", "_ana", "-ana"] {
            assert_eq!(Username::parse(bad), Err(InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn upper_case_spaces_colons_and_non_ascii_are_refused() {
        for bad in [
            "Ana",
            "ana doe",
            "ana:doe",
            "ana@desk",
            "an\u{e1}",
            "\u{430}na",
            "ana\n",
        ] {
            assert_eq!(Username::parse(bad), Err(InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn a_username_serialises_as_a_plain_string() {
        let username = Username::parse("ana").unwrap();
        assert_eq!(serde_json::to_string(&username).unwrap(), "\"ana\"");
    }

    proptest! {
        #[test]
        fn every_well_formed_username_parses_to_itself(input in "[a-z][a-z0-9._-]{2,63}") {
            let username = Username::parse(&input).unwrap();
            prop_assert_eq!(username.as_str(), input.as_str());
        }

        #[test]
        fn parsing_arbitrary_text_never_panics_and_accepts_only_the_alphabet(input in "\\PC{0,80}") {
            if let Ok(username) = Username::parse(&input) {
                prop_assert!(username.as_str().bytes().all(|byte| byte.is_ascii_graphic()));
                prop_assert!(!username.as_str().contains(':'));
            }
        }
    }
}
