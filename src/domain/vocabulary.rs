//! The closed vocabularies of the report (DESIGN §4). Each wire value is spelled once, here, so
//! that the parser, the intake form vocabulary and the plaintext triage columns cannot drift.

/// Declares a closed vocabulary: an enum whose serde names, `as_str`, `parse`, `ALL` and OpenAPI
/// schema agree. `$text` is a `tt`, not a `literal`: a `literal` fragment reaches derive macros
/// wrapped in an invisible group, which `utoipa` skips, so the schema would list the Rust names.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order the intake form should offer them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire and column spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the wire spelling; `None` for anything outside the vocabulary.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The wire spellings of every value.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|value| value.as_str()).collect()
            }
        }

        /// From the wire spelling as a string only. serde's derive would also take
        /// `{"threat": null}`, and would answer `null`, a number or a boolean with a syntax
        /// error (a 400 for valid JSON) rather than a type error naming the field.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Spelling;

                impl serde::de::Visitor<'_> for Spelling {
                    type Value = $name;

                    fn expecting(
                        &self,
                        formatter: &mut std::fmt::Formatter<'_>,
                    ) -> std::fmt::Result {
                        let names: Vec<String> =
                            $name::names().iter().map(|name| format!("`{name}`")).collect();
                        write!(formatter, "one of {}", names.join(", "))
                    }

                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::parse(text).ok_or_else(|| E::unknown_variant(text, &[$($text),+]))
                    }
                }

                deserializer.deserialize_str(Spelling)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What happened to the reporter.
    IncidentType {
        Intimidation => "intimidation",
        Threat => "threat",
        ReprisalAgainstRelatives => "reprisal_against_relatives",
        Photographing => "photographing",
        Surveillance => "surveillance",
        BlockedSubmission => "blocked_submission",
        AccessDenied => "access_denied",
        TravelRestriction => "travel_restriction",
        OnlineHarassment => "online_harassment",
        Other => "other",
    }
}

vocabulary! {
    /// The UN mechanism in whose context the incident happened.
    MechanismKind {
        Upr => "upr",
        HrcSession => "hrc_session",
        TreatyBody => "treaty_body",
        SpecialProcedure => "special_procedure",
        Other => "other",
    }
}

vocabulary! {
    /// Who the reporter says the perpetrator was; recorded as claimed, never as verified.
    PerpetratorKind {
        StateOfficial => "state_official",
        GongoRepresentative => "gongo_representative",
        SecurityOrPolice => "security_or_police",
        Unknown => "unknown",
        Other => "other",
    }
}

vocabulary! {
    /// How precise `occurred_at` is.
    OccurredAtPrecision {
        Exact => "exact",
        Hour => "hour",
        Day => "day",
        Approximate => "approximate",
    }
}

vocabulary! {
    /// Consent to appear in the Secretary-General's annual report on reprisals.
    SgReportConsent {
        Named => "named",
        Anonymised => "anonymised",
        No => "no",
    }
}

vocabulary! {
    /// The kind of an item in a case's thread (DESIGN §4, `entries`).
    EntryKind {
        Report => "report",
        ReporterMessage => "reporter_message",
        MessageToReporter => "message_to_reporter",
        InternalNote => "internal_note",
        Attachment => "attachment",
    }
}

vocabulary! {
    /// The triage status of a case. Intake creates cases as `new`.
    CaseStatus {
        New => "new",
        InReview => "in_review",
        AwaitingReporter => "awaiting_reporter",
        Referred => "referred",
        Closed => "closed",
    }
}

vocabulary! {
    /// What an account may do (issue 3). A role alone never reveals case content: reading needs a
    /// grant, whatever the role.
    Role {
        /// Manages accounts, desks and memberships; reads the audit log.
        Admin => "admin",
        /// Grants and revokes the cases they can read, on any desk.
        Coordinator => "coordinator",
        /// Reads the cases granted to them.
        Reviewer => "reviewer",
        /// Reads the audit log; nothing else.
        Auditor => "auditor",
    }
}

vocabulary! {
    /// A member's role on one desk. A desk coordinator grants and revokes that desk's cases.
    DeskRole {
        Coordinator => "coordinator",
        Member => "member",
    }
}

vocabulary! {
    /// Whether an account may log in.
    AccountStatus {
        /// Enrolled, TOTP not yet confirmed.
        Pending => "pending",
        Active => "active",
        /// Disabled by an admin: no login, no session, no new grants at intake.
        Disabled => "disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_parses_back_from_its_own_spelling() {
        for value in IncidentType::ALL {
            assert_eq!(IncidentType::parse(value.as_str()), Some(*value));
        }
        for value in EntryKind::ALL {
            assert_eq!(EntryKind::parse(value.as_str()), Some(*value));
        }
    }

    #[test]
    fn serde_uses_the_same_spelling_as_as_str() {
        for value in MechanismKind::ALL {
            let json = serde_json::to_string(value).unwrap();
            assert_eq!(json, format!("\"{}\"", value.as_str()));
        }
    }

    #[test]
    fn the_openapi_schema_lists_the_wire_spellings() {
        let schema = serde_json::to_value(<Role as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(Role::names()));
        let schema =
            serde_json::to_value(<IncidentType as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(IncidentType::names()));
    }

    #[test]
    fn values_outside_the_vocabulary_are_refused() {
        assert_eq!(IncidentType::parse("Photographing"), None);
        assert_eq!(PerpetratorKind::parse(""), None);
        assert!(serde_json::from_str::<SgReportConsent>("\"yes\"").is_err());
    }
}
