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

#[cfg(test)]
mod tests {
    use super::*;

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
