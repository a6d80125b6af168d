//! Desks: the teams that receive cases.

use std::fmt;

/// The slug of the desk that intake uses when a report names none.
pub const DEFAULT_DESK_SLUG: &str = "default";

/// A desk slug: 1–64 characters of lower-case ASCII letters, digits and single hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct DeskSlug(String);

/// The input is not a desk slug.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a desk is named by 1 to 64 lower-case letters, digits and hyphens")]
pub struct InvalidDeskSlug;

impl DeskSlug {
    /// Parses a slug.
    pub fn parse(input: &str) -> Result<Self, InvalidDeskSlug> {
        let well_formed = (1..=64).contains(&input.len())
            && input
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
            && !input.starts_with('-')
            && !input.ends_with('-')
            && !input.contains("--");
        if well_formed {
            Ok(Self(input.to_owned()))
        } else {
            Err(InvalidDeskSlug)
        }
    }

    /// The default desk.
    pub fn default_desk() -> Self {
        Self(DEFAULT_DESK_SLUG.to_owned())
    }

    /// The slug as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeskSlug {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The longest desk name, in characters.
pub const MAX_DESK_NAME: usize = 100;

/// A desk's name, which the intake form shows to reporters: 1 to [`MAX_DESK_NAME`] characters
/// once trimmed, with something visible, and none that a reader cannot see or that changes how
/// the rest reads: control and format characters (zero-width space, soft hyphen, byte-order
/// mark, bidirectional overrides and isolates, tags), line and paragraph separators, private-use,
/// surrogate and unassigned code points (noncharacters among them). The format characters that
/// ordinary writing needs are kept: the zero-width non-joiner and joiner (Persian and Indic
/// words, emoji sequences) and the implicit direction marks (U+200E, U+200F, U+061C), as report
/// fields keep them. Something visible means a letter, digit, punctuation mark or symbol other
/// than the blank-looking fillers (Hangul fillers, the blank braille pattern): marks, spaces and
/// the kept format characters alone show nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskName(String);

/// The input is not a desk name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "must be 1 to 100 characters with something visible, and no control, invisible, \
     direction-changing or unassigned characters"
)]
pub struct InvalidDeskName;

impl DeskName {
    /// Parses a name, trimmed of surrounding whitespace.
    pub fn parse(input: &str) -> Result<Self, InvalidDeskName> {
        use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
        let name = input.trim();
        let writing = |character: char| matches!(character, '\u{200C}'..='\u{200F}' | '\u{061C}');
        let hidden = |character: char| {
            !writing(character)
                && matches!(
                    character.general_category(),
                    GeneralCategory::Control
                        | GeneralCategory::Format
                        | GeneralCategory::LineSeparator
                        | GeneralCategory::ParagraphSeparator
                        | GeneralCategory::PrivateUse
                        | GeneralCategory::Surrogate
                        | GeneralCategory::Unassigned
                )
        };
        let blank = |character: char| {
            matches!(
                character,
                '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}'
            )
        };
        let visible = |character: char| {
            matches!(
                character.general_category_group(),
                GeneralCategoryGroup::Letter
                    | GeneralCategoryGroup::Number
                    | GeneralCategoryGroup::Punctuation
                    | GeneralCategoryGroup::Symbol
            ) && !blank(character)
        };
        let well_formed = (1..=MAX_DESK_NAME).contains(&name.chars().count())
            && !name.chars().any(hidden)
            && name.chars().any(visible);
        if well_formed {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidDeskName)
        }
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desk_names_in_any_script_parse_trimmed() {
        for (given, kept) in [
            ("Geneva desk", "Geneva desk"),
            ("  UPR 45 — Genève  ", "UPR 45 — Genève"),
            ("مكتب جنيف", "مكتب جنيف"),
            ("日内瓦", "日内瓦"),
            ("Desk\u{a0}A", "Desk\u{a0}A"),
            // Persian needs the zero-width non-joiner; emoji sequences the joiner.
            ("میز\u{200c}ها", "میز\u{200c}ها"),
            (
                "Team \u{1f469}\u{200d}\u{1f4bb}",
                "Team \u{1f469}\u{200d}\u{1f4bb}",
            ),
            ("\u{200f}مكتب", "\u{200f}مكتب"),
            ("देवनागरी", "देवनागरी"),
        ] {
            assert_eq!(DeskName::parse(given).unwrap().as_str(), kept, "{given:?}");
        }
        assert!(DeskName::parse(&"é".repeat(MAX_DESK_NAME)).is_ok());
    }

    proptest::proptest! {
        /// Whatever is sent, parsing answers; and what it keeps is trimmed, within the limit,
        /// visible, and free of the characters that hide or reorder text.
        #[test]
        fn any_text_is_a_clean_name_or_refused(text in "(.|[\u{200b}-\u{200f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{feff}]){0,120}") {
            if let Ok(name) = DeskName::parse(&text) {
                let kept = name.as_str();
                proptest::prop_assert_eq!(kept, kept.trim());
                proptest::prop_assert!((1..=MAX_DESK_NAME).contains(&kept.chars().count()));
                let hides = |character: char| {
                    character.is_control()
                        || matches!(
                            character,
                            '\u{200b}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
                        )
                };
                let shows = |character: char| {
                    !character.is_whitespace()
                        && !matches!(character, '\u{200c}'..='\u{200f}' | '\u{061c}' | '\u{3164}' | '\u{2800}')
                };
                proptest::prop_assert!(!kept.chars().any(hides));
                proptest::prop_assert!(kept.chars().any(shows));
            }
        }
    }

    #[test]
    fn invisible_or_misleading_desk_names_are_refused() {
        for bad in [
            "",
            "   ",
            "\u{200b}",
            "a\u{202e}b",
            "\u{feff}",
            "\u{ad}",
            "\u{2066}x",
            "x\u{2028}y",
            "\u{e0041}tag",
            "\u{ffff}",
            "x\u{85}y",
            "a\u{7}",
            "\u{e000}private",
            "\u{200d}",
            "\u{200c}\u{200f}",
            "\u{2060}word-joined",
            "\u{3164}",
            "\u{2800}\u{2800}",
            "\u{301}",
            "\u{fe0f}",
            &"a".repeat(MAX_DESK_NAME + 1),
        ] {
            assert_eq!(DeskName::parse(bad), Err(InvalidDeskName), "{bad:?}");
        }
    }

    #[test]
    fn ordinary_slugs_parse() {
        assert!(DeskSlug::parse("default").is_ok());
        assert!(DeskSlug::parse("upr-45-geneva").is_ok());
    }

    #[test]
    fn odd_slugs_are_refused() {
        for bad in [
            "",
            "Default",
            "-a",
            "a-",
            "a--b",
            "a b",
            "\u{e9}",
            &"a".repeat(65),
        ] {
            assert_eq!(DeskSlug::parse(bad), Err(InvalidDeskSlug), "{bad:?}");
        }
    }
}
