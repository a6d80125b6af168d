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
    use proptest::strategy::ValueTree;

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

    /// Characters a username may not hold but a person might type: upper case, separators, the
    /// otpauth ':', a Cyrillic and a Latin look-alike, controls.
    const FOREIGN: [char; 12] = [
        'A', 'Z', ':', ' ', '@', '/', '+', '\u{e1}', '\u{430}', '\u{131}', '\n', '\0',
    ];

    /// Text near the rules: lengths around both limits, the username alphabet in every position
    /// (so the first character is a digit or a symbol a third of the time), and in two of five
    /// inputs one foreign character at a random place. Random Unicode text is almost never a
    /// username, so it would exercise only the refusal.
    fn near_username() -> impl Strategy<Value = String> {
        let allowed: Vec<char> = ('a'..='z')
            .chain('0'..='9')
            .chain(['.', '_', '-'])
            .collect();
        let length = prop_oneof![
            0usize..=5,
            (MAX_USERNAME_LENGTH - 3)..=(MAX_USERNAME_LENGTH + 3),
            0usize..=(MAX_USERNAME_LENGTH + 8),
        ];
        let foreign =
            prop_oneof![3 => proptest::sample::select(FOREIGN.to_vec()), 1 => any::<char>()];
        length
            .prop_flat_map(move |length| {
                (
                    proptest::collection::vec(proptest::sample::select(allowed.clone()), length),
                    proptest::option::weighted(
                        0.4,
                        (any::<proptest::sample::Index>(), foreign.clone()),
                    ),
                )
            })
            .prop_map(|(mut characters, intruder)| {
                if let Some((place, character)) = intruder {
                    if characters.is_empty() {
                        characters.push(character);
                    } else {
                        let place = place.index(characters.len());
                        characters[place] = character;
                    }
                }
                characters.into_iter().collect()
            })
    }

    /// The rule of the type's documentation, written out independently of the parser.
    fn well_formed(input: &str) -> bool {
        let characters: Vec<char> = input.chars().collect();
        (3..=64).contains(&characters.len())
            && characters[0].is_ascii_lowercase()
            && characters.iter().all(|character| {
                character.is_ascii_lowercase()
                    || character.is_ascii_digit()
                    || matches!(character, '.' | '_' | '-')
            })
    }

    #[test]
    fn near_usernames_reach_both_verdicts() {
        // A fixed seed, so this counts the same inputs on every run.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = near_username();
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..256 {
            let input = strategy.new_tree(&mut runner).unwrap().current();
            match Username::parse(&input) {
                Ok(_) => accepted += 1,
                Err(InvalidUsername) => refused += 1,
            }
        }
        assert!(accepted >= 25, "{accepted} of 256 near usernames accepted");
        assert!(refused >= 25, "{refused} of 256 near usernames refused");
    }

    proptest! {
        #[test]
        fn every_well_formed_username_parses_to_itself(input in "[a-z][a-z0-9._-]{2,63}") {
            let username = Username::parse(&input).unwrap();
            prop_assert_eq!(username.as_str(), input.as_str());
        }

        #[test]
        fn parsing_never_panics_and_accepts_only_the_alphabet(input in near_username()) {
            let parsed = Username::parse(&input);
            prop_assert_eq!(parsed.is_ok(), well_formed(&input), "{:?}", input);
            if let Ok(username) = parsed {
                prop_assert_eq!(username.as_str(), input.as_str());
                prop_assert!(username.as_str().bytes().all(|byte| byte.is_ascii_graphic()));
                prop_assert!(!username.as_str().contains(':'));
                prop_assert!(username.as_str().starts_with(|character: char| character.is_ascii_lowercase()));
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(input in "\\PC{0,80}") {
            prop_assert_eq!(Username::parse(&input).is_ok(), well_formed(&input));
        }
    }
}
