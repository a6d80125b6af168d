//! The public reference of a case, e.g. `K7QM-3XTA-9PWD`.

use std::fmt;

use super::random_id::{normalise_base32, random_base32};

/// A case reference: 12 random Crockford base32 characters (60 bits) in three groups of four.
/// Random rather than sequential, so that a reference says nothing about how many cases exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CaseRef(String);

/// The input is not a case reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a case reference is 12 letters and digits, like K7QM-3XTA-9PWD")]
pub struct InvalidCaseRef;

impl CaseRef {
    /// A fresh random reference.
    pub fn generate() -> Self {
        Self::from_compact(&random_base32(12))
    }

    /// Parses a reference as typed by a person: case-insensitive, hyphens optional.
    pub fn parse(input: &str) -> Result<Self, InvalidCaseRef> {
        let compact = normalise_base32(input).ok_or(InvalidCaseRef)?;
        if compact.len() != 12 {
            return Err(InvalidCaseRef);
        }
        Ok(Self::from_compact(&compact))
    }

    fn from_compact(compact: &str) -> Self {
        Self(format!(
            "{}-{}-{}",
            &compact[0..4],
            &compact[4..8],
            &compact[8..12]
        ))
    }

    /// The canonical spelling, as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CaseRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The id of one entry (report, message, note, attachment) in a case thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EntryId(String);

impl EntryId {
    /// A fresh random entry id (16 base32 characters, 80 bits).
    pub fn generate() -> Self {
        Self(random_base32(16))
    }

    /// Parses a stored entry id.
    pub fn parse(input: &str) -> Option<Self> {
        let compact = normalise_base32(input)?;
        (compact.len() == 16 && compact == input).then_some(Self(compact))
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryId {
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
    fn a_generated_reference_parses_back_to_itself() {
        let reference = CaseRef::generate();
        assert_eq!(CaseRef::parse(reference.as_str()), Ok(reference));
    }

    #[test]
    fn typing_is_forgiving_about_case_hyphens_and_look_alikes() {
        let parsed = CaseRef::parse("k7qm 3xta-9pwd").unwrap();
        assert_eq!(parsed.as_str(), "K7QM-3XTA-9PWD");
        assert_eq!(
            CaseRef::parse("O1LI-0000-0000").unwrap().as_str(),
            "0111-0000-0000"
        );
    }

    #[test]
    fn wrong_lengths_and_foreign_characters_are_refused() {
        assert_eq!(CaseRef::parse("K7QM-3XTA"), Err(InvalidCaseRef));
        assert_eq!(CaseRef::parse("K7QM-3XTA-9PWDX"), Err(InvalidCaseRef));
        assert_eq!(CaseRef::parse("K7QM-3XTA-9PWU"), Err(InvalidCaseRef));
        assert_eq!(CaseRef::parse("K7QM-3XTA-9PL\u{e9}"), Err(InvalidCaseRef));
    }

    #[test]
    fn entry_ids_only_accept_the_canonical_spelling() {
        let id = EntryId::generate();
        assert_eq!(EntryId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(EntryId::parse(&id.as_str().to_lowercase()), None);
    }

    /// Text as a person might type a reference: 10 to 16 symbols (12 most often) drawn from the
    /// Crockford alphabet in both cases, its look-alikes (I, L, O), the excluded U and, rarely, a
    /// foreign character, with hyphens, spaces or, rarely, another separator here and there.
    /// Random Unicode text almost never holds twelve symbols, so it would exercise only the
    /// refusal.
    fn typed_reference() -> impl Strategy<Value = String> {
        let symbol = prop_oneof![
            24 => proptest::sample::select(
                "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz".chars().collect::<Vec<_>>()
            ),
            6 => proptest::sample::select(vec!['I', 'i', 'L', 'l', 'O', 'o']),
            1 => proptest::sample::select(vec!['U', 'u', '_', '.', '\u{e9}', '\u{130}', '\u{212a}', '\u{ff21}']),
            1 => any::<char>(),
        ];
        // Only hyphens and spaces separate groups; other separators a person might type
        // (underscore, dot, slash, Unicode hyphens and dashes, no-break space) do not.
        let separator = prop_oneof![
            24 => Just(""),
            3 => Just("-"),
            3 => Just(" "),
            1 => proptest::sample::select(vec!["_", ".", "/", "\u{2010}", "\u{2013}", "\u{a0}"]),
        ];
        let count = prop_oneof![2 => Just(12usize), 1 => 10usize..=16];
        count
            .prop_flat_map(move |count| {
                proptest::collection::vec((symbol.clone(), separator.clone()), count)
            })
            .prop_map(|typed| {
                typed
                    .into_iter()
                    .map(|(symbol, separator)| format!("{symbol}{separator}"))
                    .collect()
            })
    }

    /// What a reference typed as `input` must canonicalise to, worked out from the Crockford
    /// specification rather than from the parser: `None` if it is not a reference.
    fn expected_reference(input: &str) -> Option<String> {
        let mut symbols = String::new();
        for character in input.chars() {
            match character {
                '-' | ' ' => {}
                'O' | 'o' => symbols.push('0'),
                'I' | 'i' | 'L' | 'l' => symbols.push('1'),
                'U' | 'u' => return None,
                other if other.is_ascii_alphanumeric() => symbols.push(other.to_ascii_uppercase()),
                _ => return None,
            }
        }
        (symbols.len() == 12)
            .then(|| format!("{}-{}-{}", &symbols[0..4], &symbols[4..8], &symbols[8..12]))
    }

    #[test]
    fn typed_references_reach_both_verdicts() {
        // A fixed seed, so this counts the same inputs on every run.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = typed_reference();
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..256 {
            let input = strategy.new_tree(&mut runner).unwrap().current();
            match CaseRef::parse(&input) {
                Ok(_) => accepted += 1,
                Err(InvalidCaseRef) => refused += 1,
            }
        }
        assert!(
            accepted >= 25,
            "{accepted} of 256 typed references accepted"
        );
        assert!(refused >= 25, "{refused} of 256 typed references refused");
    }

    proptest! {
        // Four times the default: an input with one foreign separator and twelve symbols, the
        // case that tells a too lenient parser apart, is about one in fifty.
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn parsing_never_panics_and_accepts_only_twelve_symbols(input in typed_reference()) {
            let parsed = CaseRef::parse(&input);
            let expected = expected_reference(&input);
            prop_assert_eq!(
                parsed.as_ref().ok().map(CaseRef::as_str),
                expected.as_deref(),
                "{:?}", input
            );
            if let Ok(reference) = parsed {
                prop_assert_eq!(reference.as_str().len(), 14);
                prop_assert_eq!(CaseRef::parse(reference.as_str()), Ok(reference.clone()));
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(input in "\\PC{0,40}") {
            prop_assert_eq!(CaseRef::parse(&input).is_ok(), expected_reference(&input).is_some());
        }
    }
}
