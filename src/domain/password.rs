//! Reviewer passwords and the policy a new one must meet (issue 3: at least 12 characters, checked
//! against a bundled list of common passwords). The policy follows NIST SP 800-63B §5.1.1.2 and
//! OWASP's Authentication Cheat Sheet: a length floor, a generous ceiling, no composition rules,
//! and a check against passwords known to be common.

use age::secrecy::{ExposeSecret, SecretString};
use zxcvbn::Score;
use zxcvbn::feedback::Warning;

/// Fewest characters (Unicode scalar values, not bytes) a new password may have.
pub const MIN_PASSWORD_CHARACTERS: usize = 12;
/// Most characters a new password may have: long passphrases are welcome, but argon2 and the
/// strength estimator should not be handed megabytes.
pub const MAX_PASSWORD_CHARACTERS: usize = 1024;
/// Lowest zxcvbn score accepted: 3 means "safely unguessable", about 10^10 guesses or more.
const MIN_STRENGTH: Score = Score::Three;

/// A password that met the policy when it was chosen. Never `Debug`, `Clone` or `Display`.
pub struct Password(SecretString);

/// Why a new password was refused, in one sentence that never repeats the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordRejected {
    /// Fewer than [`MIN_PASSWORD_CHARACTERS`] characters.
    #[error(
        "the password is too short: use at least 12 characters, a few unrelated words work well"
    )]
    TooShort,
    /// More than [`MAX_PASSWORD_CHARACTERS`] characters.
    #[error("the password is too long: use at most 1024 characters")]
    TooLong,
    /// The password is, or contains, the username.
    #[error("the password must not contain the username")]
    ContainsUsername,
    /// The password is on, or close to something on, the bundled list of common passwords.
    #[error("the password is a common one or close to one: choose something less predictable")]
    Common,
    /// The password is not common as such, but built from guessable patterns (words, dates,
    /// keyboard rows, repeats).
    #[error("the password is too easy to guess: add a few more unrelated words")]
    TooEasyToGuess,
}

impl Password {
    /// Checks a new password for `username` against the policy. Not for logins: a login compares
    /// whatever was typed, and a policy change must not lock anybody out.
    pub fn parse(input: &str, username: &str) -> Result<Self, PasswordRejected> {
        let characters = input.chars().count();
        if characters < MIN_PASSWORD_CHARACTERS {
            return Err(PasswordRejected::TooShort);
        }
        if characters > MAX_PASSWORD_CHARACTERS {
            return Err(PasswordRejected::TooLong);
        }
        if contains_username(input, username) {
            return Err(PasswordRejected::ContainsUsername);
        }
        // zxcvbn matches against its bundled frequency lists (the 30,000 most common passwords,
        // English words, names, TV and film). It reads only the first 100 characters, so a
        // longer passphrase is judged by how it begins.
        let estimate = zxcvbn::zxcvbn(input, &[username]);
        if estimate.score() < MIN_STRENGTH {
            let common = estimate
                .feedback()
                .and_then(|feedback| feedback.warning())
                .is_some_and(|warning| {
                    matches!(
                        warning,
                        Warning::ThisIsATop10Password
                            | Warning::ThisIsATop100Password
                            | Warning::ThisIsACommonPassword
                            | Warning::ThisIsSimilarToACommonlyUsedPassword
                    )
                });
            return Err(if common {
                PasswordRejected::Common
            } else {
                PasswordRejected::TooEasyToGuess
            });
        }
        Ok(Self(SecretString::from(input)))
    }

    /// The password's UTF-8 bytes: the input of the reviewer KDF.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

/// Whether `password` contains `username`, ignoring case. An empty username contains nothing.
fn contains_username(password: &str, username: &str) -> bool {
    let username = username.trim();
    !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_common_password_is_refused_as_common() {
        assert_eq!(
            Password::parse("password1234", "ana").err(),
            Some(PasswordRejected::Common)
        );
    }

    #[test]
    fn a_random_looking_twelve_character_passphrase_is_accepted() {
        let password = Password::parse("tulip-oxen-97", "ana").unwrap();
        assert_eq!(password.as_bytes(), b"tulip-oxen-97");
        assert!(Password::parse("correct horse battery staple", "ana").is_ok());
    }

    #[test]
    fn eleven_characters_are_too_short() {
        assert_eq!(
            Password::parse("xq7#Lm2!vR9", "ana").err(),
            Some(PasswordRejected::TooShort)
        );
    }

    #[test]
    fn multi_byte_characters_count_as_one_character_each() {
        // Eleven characters in 22 bytes: still too short.
        let eleven = "ñøçžéåüßæœł";
        assert_eq!(eleven.chars().count(), 11);
        assert!(eleven.len() > MIN_PASSWORD_CHARACTERS);
        assert_eq!(
            Password::parse(eleven, "ana").err(),
            Some(PasswordRejected::TooShort)
        );
        // Twelve characters of Cyrillic and Greek, unguessable to the English lists: accepted.
        let twelve = "жλщфыπбюшΩгз";
        assert_eq!(twelve.chars().count(), 12);
        assert!(Password::parse(twelve, "ana").is_ok());
    }

    #[test]
    fn the_length_ceiling_counts_characters_too() {
        let at_ceiling: String = "Zq7$kP2w".repeat(112) + &"é".repeat(MAX_PASSWORD_CHARACTERS / 8);
        assert_eq!(at_ceiling.chars().count(), MAX_PASSWORD_CHARACTERS);
        assert!(Password::parse(&at_ceiling, "ana").is_ok());
        let over = at_ceiling + "x";
        assert_eq!(
            Password::parse(&over, "ana").err(),
            Some(PasswordRejected::TooLong)
        );
    }

    #[test]
    fn a_password_containing_the_username_is_refused_whatever_the_case() {
        assert_eq!(
            Password::parse("quiet-Ana.Lopez-harbour", "ana.lopez").err(),
            Some(PasswordRejected::ContainsUsername)
        );
        assert_eq!(
            Password::parse("coordinator1", "coordinator1").err(),
            Some(PasswordRejected::ContainsUsername)
        );
    }

    #[test]
    fn patterns_that_are_not_on_the_list_are_still_too_easy_to_guess() {
        assert!(Password::parse("aaaaaaaaaaaaaaaa", "ana").is_err());
        assert!(Password::parse("qwertyuiopasdf", "ana").is_err());
        assert!(Password::parse("abcdefghijklmnop", "ana").is_err());
    }

    #[test]
    fn a_refusal_never_repeats_the_password() {
        for (candidate, username) in [
            ("password1234", "ana"),
            ("kiwi7", "ana"),
            ("quiet-ana-harbour", "ana"),
            ("aaaaaaaaaaaaaaaa", "ana"),
        ] {
            let message = Password::parse(candidate, username)
                .err()
                .unwrap()
                .to_string();
            assert!(!message.contains(candidate), "{message}");
            assert!(message.ends_with(|character: char| character.is_alphanumeric()));
        }
    }

    proptest! {
        #[test]
        fn anything_shorter_than_twelve_characters_is_refused(input in "\\PC{0,11}") {
            prop_assert_eq!(Password::parse(&input, "ana").err(), Some(PasswordRejected::TooShort));
        }

        #[test]
        fn an_accepted_password_keeps_its_exact_bytes(input in "[a-zA-Z0-9 !#%&*+=?@^~]{12,40}") {
            if let Ok(password) = Password::parse(&input, "ana") {
                prop_assert_eq!(password.as_bytes(), input.as_bytes());
            }
        }
    }
}
