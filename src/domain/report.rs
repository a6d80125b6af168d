//! The report as a phone sends it (DESIGN §4, "The wire shape of a report"), and its validation.
//!
//! The wire shape is the contract with phone clients: fields are added, never renamed. A report is
//! parsed once into [`Report`]; below this module nobody handles an unvalidated report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{
    Date, OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description,
};
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::desk::DeskSlug;
use super::vocabulary::{
    IncidentType, MechanismKind, OccurredAtPrecision, PerpetratorKind, SgReportConsent,
};

/// Maximum lengths, in characters, of the free-text fields. Published by `GET /api/v1/intake`.
pub mod limits {
    /// `description`: what happened, in the reporter's language.
    pub const DESCRIPTION: u64 = 20_000;
    /// `location`.
    pub const LOCATION: u64 = 500;
    /// `perpetrator.description`.
    pub const PERPETRATOR_DESCRIPTION: u64 = 5_000;
    /// `mechanism.session`: a short label such as "UPR 45" or "HRC 58".
    pub const SESSION_LABEL: u64 = 64;
    /// `mechanism.state_under_review`.
    pub const STATE_UNDER_REVIEW: u64 = 100;
    /// `blocked_submission.platform` and `.reference`.
    pub const SUBMISSION_FIELD: u64 = 200;
    /// `blocked_submission.what_happened`.
    pub const SUBMISSION_WHAT_HAPPENED: u64 = 5_000;
    /// `consent.contact.channel`.
    pub const CONTACT_CHANNEL: u64 = 40;
    /// `consent.contact.handle`.
    pub const CONTACT_HANDLE: u64 = 200;
    /// `language`: a BCP 47 tag.
    pub const LANGUAGE: u64 = 35;
    /// `occurred_at`: an RFC 3339 date-time with nanoseconds and an offset is 35; the rest is
    /// room. Like the dates, it is counted in the 4 KiB beside [`ALL_TEXT_CHARS`].
    pub const OCCURRED_AT: u64 = 64;

    /// Every text field of a report at its limit, in characters.
    pub const ALL_TEXT_CHARS: u64 = DESCRIPTION
        + LOCATION
        + PERPETRATOR_DESCRIPTION
        + SESSION_LABEL
        + STATE_UNDER_REVIEW
        + 2 * SUBMISSION_FIELD
        + SUBMISSION_WHAT_HAPPENED
        + CONTACT_CHANNEL
        + CONTACT_HANDLE
        + LANGUAGE;
    /// The largest valid report as UTF-8 JSON: every text field at its limit in four-byte
    /// characters, plus 4 KiB for the keys, the enum values and the punctuation. A body limit
    /// below this would refuse valid reports with a 413.
    pub const LARGEST_REPORT_BYTES: u64 = 4 * ALL_TEXT_CHARS + 4096;
}

/// The UN mechanism and session.
#[derive(Serialize, Deserialize, Validate, Zeroize, ZeroizeOnDrop, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mechanism {
    #[zeroize(skip)]
    pub kind: MechanismKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::SESSION_LABEL), custom(function = "single_line"))]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::STATE_UNDER_REVIEW), custom(function = "single_line"))]
    pub state_under_review: Option<String>,
}

/// The perpetrator, as the reporter describes them.
#[derive(Serialize, Deserialize, Validate, Zeroize, ZeroizeOnDrop, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Perpetrator {
    #[zeroize(skip)]
    pub kind: PerpetratorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::PERPETRATOR_DESCRIPTION), custom(function = "free_text"))]
    pub description: Option<String>,
}

/// A submission blocked from, or removed from, a UN platform.
#[derive(Serialize, Deserialize, Validate, Zeroize, ZeroizeOnDrop, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockedSubmission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::SUBMISSION_FIELD), custom(function = "single_line"))]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::SUBMISSION_FIELD), custom(function = "single_line"))]
    pub reference: Option<String>,
    /// A date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "calendar_date"))]
    pub submitted_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::SUBMISSION_WHAT_HAPPENED), custom(function = "free_text"))]
    pub what_happened: Option<String>,
}

/// Whether, and how, the desk may contact the reporter.
#[derive(Default, Serialize, Deserialize, Validate, Zeroize, ZeroizeOnDrop, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::CONTACT_CHANNEL), custom(function = "single_line"))]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::CONTACT_HANDLE), custom(function = "single_line"))]
    pub handle: Option<String>,
}

/// The reporter's consent. Every flag defaults to the most protective choice.
#[derive(Serialize, Deserialize, Validate, Zeroize, ZeroizeOnDrop, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    #[serde(default)]
    pub share_with_ohchr: bool,
    #[serde(default = "no_sg_report")]
    #[zeroize(skip)]
    pub sg_report: SgReportConsent,
    #[serde(default)]
    pub share_with_partners: bool,
    #[serde(default)]
    pub aggregate_statistics: bool,
    #[serde(default, deserialize_with = "crate::domain::wire::object")]
    #[validate(nested)]
    pub contact: Contact,
}

fn no_sg_report() -> SgReportConsent {
    SgReportConsent::No
}

impl Default for Consent {
    fn default() -> Self {
        Self {
            share_with_ohchr: false,
            sg_report: SgReportConsent::No,
            share_with_partners: false,
            aggregate_statistics: false,
            contact: Contact::default(),
        }
    }
}

/// The wire shape of a report. Only `incident_type` and `description` are required.
#[derive(Serialize, Deserialize, Validate, Zeroize, ZeroizeOnDrop, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportWire {
    /// The receiving desk's slug (`GET /api/v1/intake` lists them); `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "desk_slug"))]
    pub desk: Option<String>,
    #[zeroize(skip)]
    pub incident_type: IncidentType,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::wire::optional_object"
    )]
    #[validate(nested)]
    pub mechanism: Option<Mechanism>,
    /// A date-time (`2024-01-23T10:30:00Z`), a date (`2024-01-23`) or a month (`2024-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(
        length(max = limits::OCCURRED_AT),
        custom(function = "valid_occurred_at")
    )]
    pub occurred_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[zeroize(skip)]
    pub occurred_at_precision: Option<OccurredAtPrecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::LOCATION), custom(function = "free_text"))]
    pub location: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::wire::optional_object"
    )]
    #[validate(nested)]
    pub perpetrator: Option<Perpetrator>,
    #[validate(
        length(min = 1, max = limits::DESCRIPTION),
        custom(function = "free_text"),
        custom(function = "not_blank")
    )]
    pub description: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::wire::optional_object"
    )]
    #[validate(nested)]
    pub blocked_submission: Option<BlockedSubmission>,
    #[serde(default, deserialize_with = "crate::domain::wire::object")]
    #[validate(nested)]
    pub consent: Consent,
    /// A BCP 47 language tag such as `en`, `fr` or `zh-Hant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = limits::LANGUAGE), custom(function = "language_tag"))]
    pub language: Option<String>,
}

/// A validated report; its text is wiped from memory when it is dropped. Its serialised form
/// is the wire shape, which is what gets sealed. Neither `Clone` (no unwiped copies) nor a
/// `Debug` that shows text: the report types print only their incident type.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Report {
    wire: ReportWire,
    #[serde(skip)]
    desk: DeskSlug,
    #[serde(skip)]
    incident_month: Option<String>,
}

impl std::fmt::Debug for ReportWire {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReportWire")
            .field("incident_type", &self.incident_type)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Report {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Report")
            .field("incident_type", &self.wire.incident_type)
            .field("desk", &self.desk)
            .finish_non_exhaustive()
    }
}

/// Why a report was refused: a map from the field's dotted path to a sentence.
#[derive(Debug, thiserror::Error)]
#[error("the report has invalid fields")]
pub struct ReportRejected {
    /// Field path (`consent.contact.handle`) → what is wrong with it.
    pub fields: BTreeMap<String, String>,
}

impl Report {
    /// Validates a wire report. This is the only way to obtain a [`Report`].
    pub fn parse(wire: ReportWire) -> Result<Self, ReportRejected> {
        wire.validate().map_err(|errors| ReportRejected {
            fields: flatten_errors(&errors),
        })?;
        let desk = match &wire.desk {
            Some(slug) => DeskSlug::parse(slug).map_err(|error| single_field("desk", error))?,
            None => DeskSlug::default_desk(),
        };
        let incident_month = wire
            .occurred_at
            .as_deref()
            .map(incident_month)
            .transpose()
            .map_err(|_| single_field("occurred_at", "is not a date"))?;
        Ok(Self {
            wire,
            desk,
            incident_month,
        })
    }

    /// The receiving desk (`default` when the report names none).
    pub fn desk(&self) -> &DeskSlug {
        &self.desk
    }

    /// The incident type: an allowlisted plaintext column.
    pub fn incident_type(&self) -> IncidentType {
        self.wire.incident_type
    }

    /// The mechanism kind: an allowlisted plaintext column.
    pub fn mechanism_kind(&self) -> Option<MechanismKind> {
        self.wire.mechanism.as_ref().map(|mechanism| mechanism.kind)
    }

    /// The session label for the plaintext column, normalised ("UPR 45", "HRC 58"), only when it
    /// has the shape of a session label: letters then a number. Anything else a reporter typed
    /// there stays in the sealed report only, so free text never reaches a plaintext column.
    pub fn session_label(&self) -> Option<String> {
        let typed = self.wire.mechanism.as_ref()?.session.as_deref()?.trim();
        normalised_session_label(typed)
    }

    /// The perpetrator kind: an allowlisted plaintext column.
    pub fn perpetrator_kind(&self) -> Option<PerpetratorKind> {
        self.wire
            .perpetrator
            .as_ref()
            .map(|perpetrator| perpetrator.kind)
    }

    /// The month of the incident, `YYYY-MM`: the only plaintext trace of when it happened.
    pub fn incident_month(&self) -> Option<&str> {
        self.incident_month.as_deref()
    }

    /// The reporter's consent.
    pub fn consent(&self) -> &Consent {
        &self.wire.consent
    }

    /// The wire shape, for sealing.
    pub fn wire(&self) -> &ReportWire {
        &self.wire
    }
}

/// Acronyms of UN human-rights bodies whose sessions are numbered: only these may start a
/// plaintext session label, so that "Room 12" or a name never lands in clear.
const SESSION_BODIES: [&str; 15] = [
    "UPR", "HRC", "CAT", "CCPR", "CESCR", "CEDAW", "CERD", "CRC", "CRPD", "CMW", "CED", "SPT",
    "EMRIP", "FMI", "FMBHR",
];

/// `UPR 45`, `hrc58`, `CEDAW-89` → `UPR 45`, `HRC 58`, `CEDAW 89`; anything else → `None`.
fn normalised_session_label(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    let body = letters.to_ascii_uppercase();
    let rest = typed[letters.len()..].trim_start_matches([' ', '-']);
    let shaped = SESSION_BODIES.contains(&body.as_str())
        && (1..=3).contains(&rest.len())
        && rest.bytes().all(|byte| byte.is_ascii_digit());
    shaped.then(|| format!("{body} {rest}"))
}

fn single_field(path: &str, message: impl ToString) -> ReportRejected {
    ReportRejected {
        fields: BTreeMap::from([(path.to_owned(), message.to_string())]),
    }
}

/// Flattens validator's nested errors into `dotted.path → sentence`.
fn flatten_errors(errors: &ValidationErrors) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    collect_errors("", errors, &mut fields);
    fields
}

fn collect_errors(prefix: &str, errors: &ValidationErrors, out: &mut BTreeMap<String, String>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                if let Some(first) = list.first() {
                    out.insert(path, describe(first));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_errors(&path, inner, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect_errors(&format!("{path}[{index}]"), inner, out);
                }
            }
        }
    }
}

fn describe(error: &ValidationError) -> String {
    if let Some(message) = &error.message {
        return message.to_string();
    }
    match error.code.as_ref() {
        "length" => match (error.params.get("min"), error.params.get("max")) {
            (Some(min), Some(max)) => format!("must be {min} to {max} characters long"),
            (_, Some(max)) => format!("must be at most {max} characters long"),
            (Some(min), _) => format!("must be at least {min} characters long"),
            _ => "has the wrong length".to_owned(),
        },
        other => format!("is invalid ({other})"),
    }
}

fn rejection(code: &'static str, message: &'static str) -> ValidationError {
    ValidationError::new(code).with_message(message.into())
}

/// One line of text: no control characters or line separators (U+2028, U+2029), and no
/// bidirectional overrides or isolates (U+202A–U+202E, U+2066–U+2069), which can make a short
/// label read differently than it is. The implicit direction marks (U+200E, U+200F, U+061C) are
/// kept: right-to-left writers' keyboards put them into ordinary text.
fn single_line(value: &str) -> Result<(), ValidationError> {
    let spoofing =
        |character: char| matches!(character, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    // Unicode's line and paragraph separators are line breaks, though not control characters.
    let line_break = |character: char| matches!(character, '\u{2028}' | '\u{2029}');
    if value
        .chars()
        .any(|character| character.is_control() || spoofing(character) || line_break(character))
    {
        return Err(rejection(
            "single_line",
            "must be one line without control characters",
        ));
    }
    Ok(())
}

/// Free text: line breaks and tabs are fine, other control characters (NUL, escapes) are not.
fn free_text(value: &str) -> Result<(), ValidationError> {
    if value
        .chars()
        .any(|character| character.is_control() && !matches!(character, '\n' | '\r' | '\t'))
    {
        return Err(rejection(
            "free_text",
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn not_blank(value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(rejection("blank", "must not be blank"));
    }
    Ok(())
}

fn desk_slug(value: &str) -> Result<(), ValidationError> {
    DeskSlug::parse(value).map(|_| ()).map_err(|_| {
        rejection(
            "desk",
            "must be 1 to 64 lower-case letters, digits and hyphens",
        )
    })
}

fn language_tag(value: &str) -> Result<(), ValidationError> {
    let well_formed = !value.is_empty()
        && value.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if well_formed {
        Ok(())
    } else {
        Err(rejection(
            "language",
            "must be a language tag such as en, fr or zh-Hant",
        ))
    }
}

fn calendar_date(value: &str) -> Result<(), ValidationError> {
    let date = parse_date(value)
        .filter(|date| date.year() >= 1)
        .ok_or_else(|| rejection("date", "must be a date written YYYY-MM-DD"))?;
    if date > tomorrow() {
        return Err(rejection("future", "must not be in the future"));
    }
    Ok(())
}

/// The last date that is not "in the future" anywhere on Earth: tomorrow in UTC.
fn tomorrow() -> Date {
    OffsetDateTime::now_utc()
        .date()
        .next_day()
        .unwrap_or(Date::MAX)
}

/// Whether `value` (parsed to `date`, its day in UTC) lies more than a day after `now`.
fn is_future(value: &str, date: Date, now: OffsetDateTime) -> bool {
    match OffsetDateTime::parse(value, &Rfc3339) {
        // Compared as moments: the day of a moment 45 hours ahead may still be tomorrow in UTC.
        Ok(moment) => now
            .checked_add(time::Duration::DAY)
            .is_none_or(|limit| moment > limit),
        Err(_) => date > now.date().next_day().unwrap_or(Date::MAX),
    }
}

/// `occurred_at` may be an RFC 3339 date-time, a date, or a month; never more than a day ahead:
/// a date-time at most 24 hours after now, a date or a month starting no later than tomorrow
/// (UTC), which leaves room for a phone whose calendar is ahead of UTC.
fn valid_occurred_at(value: &str) -> Result<(), ValidationError> {
    let date = parse_occurred_at(value).ok_or_else(|| {
        rejection(
            "occurred_at",
            "must be a date-time (2024-01-23T10:30:00Z), a date (2024-01-23) or a month (2024-01)",
        )
    })?;
    if is_future(value, date, OffsetDateTime::now_utc()) {
        return Err(rejection("future", "must not be in the future"));
    }
    Ok(())
}

/// A date written `YYYY-MM-DD`, exactly: `time`'s `[year]` also takes a sign (`+2024-01-23`,
/// `-0001-01-01`), which would then be stored as a month such as `-001-01`.
pub(crate) fn parse_date(value: &str) -> Option<Date> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    shaped
        .then(|| Date::parse(value, format_description!("[year]-[month]-[day]")).ok())
        .flatten()
}

/// The date of `occurred_at` in UTC, from year 1 on: year 0 with a positive offset would fall
/// into year -1 in UTC, and be stored as a month such as `-001-12`.
fn parse_occurred_at(value: &str) -> Option<Date> {
    parse_occurred_at_any_year(value).filter(|date| date.year() >= 1)
}

fn parse_occurred_at_any_year(value: &str) -> Option<Date> {
    if let Ok(moment) = OffsetDateTime::parse(value, &Rfc3339) {
        // A moment late on 9999-12-31 with a negative offset falls after the last date `time`
        // can hold once in UTC (`to_offset` would panic). Only that end can overflow (RFC 3339
        // years start at 0000, far inside the range), and such a moment is in the future.
        return Some(
            moment
                .checked_to_offset(time::UtcOffset::UTC)
                .map_or(Date::MAX, |utc| utc.date()),
        );
    }
    if let Some(date) = parse_date(value) {
        return Some(date);
    }
    parse_date(&format!("{value}-01")).filter(|_| value.len() == 7)
}

fn incident_month(value: &str) -> Result<String, ()> {
    let date = parse_occurred_at(value).ok_or(())?;
    Ok(format!("{:04}-{:02}", date.year(), u8::from(date.month())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestCaseError;
    use serde_json::json;

    fn wire(value: serde_json::Value) -> ReportWire {
        serde_json::from_value(value).expect("the test report has the wire shape")
    }

    fn design_example() -> serde_json::Value {
        json!({
            "desk": "default",
            "incident_type": "photographing",
            "mechanism": {"kind": "upr", "session": "UPR 45", "state_under_review": "China"},
            "occurred_at": "2024-01-23T10:30:00Z",
            "occurred_at_precision": "hour",
            "location": "Palais des Nations, Room XX, side event",
            "perpetrator": {"kind": "gongo_representative", "description": "man with a lanyard"},
            "description": "While I spoke, he photographed me and my colleague.",
            "blocked_submission": null,
            "consent": {
                "share_with_ohchr": true,
                "sg_report": "anonymised",
                "share_with_partners": false,
                "aggregate_statistics": true,
                "contact": {"allowed": true, "channel": "signal", "handle": "+41 00 000 00 00"}
            },
            "language": "en"
        })
    }

    #[test]
    fn the_design_example_is_a_valid_report() {
        let report = Report::parse(wire(design_example())).unwrap();
        assert_eq!(report.desk().as_str(), "default");
        assert_eq!(report.incident_type(), IncidentType::Photographing);
        assert_eq!(report.session_label().as_deref(), Some("UPR 45"));
        assert_eq!(report.incident_month(), Some("2024-01"));
        assert!(report.consent().share_with_ohchr);
    }

    #[test]
    fn the_largest_valid_report_fits_the_smallest_body_limit() {
        // Every text field at its limit in four-byte characters (the language tag is ASCII).
        let full = |limit: u64| "\u{1F4F7}".repeat(usize::try_from(limit).unwrap());
        let largest = json!({
            "desk": "default",
            "incident_type": "photographing",
            "mechanism": {
                "kind": "upr",
                "session": full(limits::SESSION_LABEL),
                "state_under_review": full(limits::STATE_UNDER_REVIEW),
            },
            "occurred_at": "2024-01-23T10:30:00.123456789+01:00",
            "occurred_at_precision": "hour",
            "location": full(limits::LOCATION),
            "perpetrator": {
                "kind": "gongo_representative",
                "description": full(limits::PERPETRATOR_DESCRIPTION),
            },
            "description": full(limits::DESCRIPTION),
            "blocked_submission": {
                "platform": full(limits::SUBMISSION_FIELD),
                "reference": full(limits::SUBMISSION_FIELD),
                "what_happened": full(limits::SUBMISSION_WHAT_HAPPENED),
            },
            "consent": {
                "share_with_ohchr": true,
                "sg_report": "anonymised",
                "share_with_partners": true,
                "aggregate_statistics": true,
                "contact": {
                    "allowed": true,
                    "channel": full(limits::CONTACT_CHANNEL),
                    "handle": full(limits::CONTACT_HANDLE),
                },
            },
            "language": "zh-Hant-TW-x-abcdefgh-abcdefgh-abcd",
        });
        let bytes = serde_json::to_vec(&largest).unwrap();
        assert!(
            Report::parse(wire(largest)).is_ok(),
            "the largest report is valid"
        );
        assert!(
            u64::try_from(bytes.len()).unwrap() <= limits::LARGEST_REPORT_BYTES,
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn the_minimal_report_has_protective_consent_defaults() {
        let report = Report::parse(wire(json!({
            "incident_type": "threat",
            "description": "x"
        })))
        .unwrap();
        assert_eq!(report.desk().as_str(), "default");
        assert!(!report.consent().share_with_ohchr);
        assert_eq!(report.consent().sg_report, SgReportConsent::No);
        assert!(!report.consent().contact.allowed);
        assert_eq!(report.incident_month(), None);
    }

    #[test]
    fn only_label_shaped_sessions_reach_the_plaintext_column() {
        for (typed, column) in [
            ("UPR 45", Some("UPR 45")),
            ("hrc58", Some("HRC 58")),
            ("CEDAW-89", Some("CEDAW 89")),
            (" UPR 4 ", Some("UPR 4")),
            ("Room 12", None),
            ("Li 12", None),
            ("UPR 45 with Mr Li", None),
            ("45", None),
            ("UPR 4567", None),
            ("", None),
        ] {
            let mut example = design_example();
            example["mechanism"]["session"] = json!(typed);
            let report = Report::parse(wire(example)).unwrap();
            assert_eq!(report.session_label().as_deref(), column, "{typed:?}");
        }
    }

    #[test]
    fn the_debug_form_shows_no_text() {
        let report = Report::parse(wire(design_example())).unwrap();
        let shown = format!("{report:?} {:?}", report.wire());
        assert!(
            !shown.contains("photographed") && !shown.contains("lanyard"),
            "{shown}"
        );
    }

    #[test]
    fn bidirectional_overrides_are_refused_in_one_line_fields() {
        let mut example = design_example();
        example["consent"]["contact"]["handle"] = json!("+41\u{202E}00");
        assert!(Report::parse(wire(example)).is_err());
    }

    #[test]
    fn a_blank_description_is_refused() {
        let rejected = Report::parse(wire(
            json!({"incident_type": "threat", "description": " \n "}),
        ))
        .unwrap_err();
        assert!(rejected.fields.contains_key("description"));
    }

    #[test]
    fn an_over_long_description_names_the_field_and_the_limit() {
        let long = "é".repeat(limits::DESCRIPTION as usize + 1);
        let rejected = Report::parse(wire(
            json!({"incident_type": "threat", "description": long}),
        ))
        .unwrap_err();
        assert_eq!(
            rejected.fields["description"],
            "must be 1 to 20000 characters long"
        );
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(limits::DESCRIPTION as usize);
        assert!(
            Report::parse(wire(
                json!({"incident_type": "threat", "description": at_limit})
            ))
            .is_ok()
        );
    }

    #[test]
    fn nested_errors_carry_their_dotted_path() {
        let mut example = design_example();
        example["consent"]["contact"]["handle"] = json!("a\u{0}b");
        example["mechanism"]["session"] = json!("x".repeat(65));
        let rejected = Report::parse(wire(example)).unwrap_err();
        assert!(
            rejected.fields.contains_key("consent.contact.handle"),
            "{:?}",
            rejected.fields
        );
        assert!(
            rejected.fields.contains_key("mechanism.session"),
            "{:?}",
            rejected.fields
        );
    }

    #[test]
    fn dates_in_several_precisions_are_accepted_and_give_the_month() {
        for (input, month) in [
            ("2024-01-23T10:30:00+01:00", "2024-01"),
            ("2024-01-31T23:30:00-02:00", "2024-02"),
            ("2024-01-23", "2024-01"),
            ("2024-01", "2024-01"),
        ] {
            let report = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x", "occurred_at": input
            })))
            .unwrap();
            assert_eq!(report.incident_month(), Some(month), "{input}");
        }
    }

    /// A date-time is refused once it is more than 24 hours ahead, whatever its offset: the
    /// day it falls on in UTC is not what is compared.
    #[test]
    fn a_date_time_more_than_a_day_ahead_is_refused_as_a_moment() {
        let parse = |at: OffsetDateTime, offset_hours: i8| {
            let offset = time::UtcOffset::from_hms(offset_hours, 0, 0).unwrap();
            let text = at.to_offset(offset).format(&Rfc3339).unwrap();
            let parsed = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x", "occurred_at": text
            })));
            (text, parsed.is_ok())
        };
        let now = OffsetDateTime::now_utc();
        for offset in [0, 14, -12] {
            for hours in [-48, 0, 23] {
                let (text, accepted) = parse(now + time::Duration::hours(hours), offset);
                assert!(accepted, "{text} is within a day");
            }
            for hours in [25, 30, 45] {
                let (text, accepted) = parse(now + time::Duration::hours(hours), offset);
                assert!(!accepted, "{text} is more than a day ahead");
            }
        }
        // At a fixed moment early in a UTC day, where the day after tomorrow is still 47 hours
        // away: 25 hours ahead is refused although its day is tomorrow.
        let early = time::macros::datetime!(2026-11-30 01:00 UTC);
        for (value, future) in [
            ("2026-12-01T00:59:59Z", false),
            ("2026-12-01T01:00:01Z", true),
            ("2026-12-01T23:00:00Z", true),
            ("2026-12-02T03:00:00+14:00", true),
            ("2026-12-01", false),
            ("2026-12", false),
            ("2026-12-02", true),
        ] {
            let date = parse_occurred_at(value).unwrap();
            assert_eq!(is_future(value, date, early), future, "{value}");
        }
        // A date or a month of tomorrow is still accepted (a calendar ahead of UTC).
        let tomorrow = tomorrow();
        for value in [
            format!("{tomorrow}"),
            format!("{:04}-{:02}", tomorrow.year(), u8::from(tomorrow.month())),
        ] {
            let parsed = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x", "occurred_at": value
            })));
            assert!(parsed.is_ok(), "{value}");
        }
    }

    #[test]
    fn future_and_malformed_dates_are_refused() {
        for input in [
            "2999-01-01",
            // Past the end of the calendar once in UTC: refused as future, not a panic.
            "9999-12-31T23:00:00-01:00",
            "9999-12-31T23:59:59-23:59",
            "yesterday",
            "2024-13-01",
            "2024-1",
            "2024-01-23 10:30",
            // A sign, which `time` would take and the month column would keep as `-001-01`.
            "+2024-01-23",
            "-0001-01-01",
            "+202-01",
            "-001-01",
            // Year 0 with a positive offset is year -1 in UTC.
            "0000-01-01T00:00:00+01:00",
            "0000-06",
        ]
        .into_iter()
        .map(str::to_owned)
        // Valid RFC 3339, but no moment needs 200,000 digits of a second.
        .chain([format!("2024-01-23T10:30:00.{}Z", "1".repeat(200_000))])
        {
            let input = input.as_str();
            let rejected = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x", "occurred_at": input
            })))
            .unwrap_err();
            assert!(rejected.fields.contains_key("occurred_at"), "{input}");
        }
        for input in [
            "+2024-01-23",
            "-0001-01-01",
            "2024-1-23",
            "20240123",
            "2999-01-01",
            "0000-01-01",
        ] {
            let rejected = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x",
                "blocked_submission": {"submitted_on": input}
            })))
            .unwrap_err();
            assert!(
                rejected
                    .fields
                    .contains_key("blocked_submission.submitted_on"),
                "{input}"
            );
        }
    }

    /// Unicode's line and paragraph separators break a line as `\n` does.
    #[test]
    fn one_line_fields_refuse_unicode_line_separators_and_free_text_keeps_them() {
        for separator in ['\u{2028}', '\u{2029}'] {
            let rejected = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x",
                "mechanism": {"kind": "upr", "session": format!("UPR{separator}45")}
            })))
            .unwrap_err();
            assert!(rejected.fields.contains_key("mechanism.session"));
            assert!(
                Report::parse(wire(json!({
                    "incident_type": "threat",
                    "description": format!("first{separator}second")
                })))
                .is_ok()
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_the_wire_shape() {
        let result = serde_json::from_value::<ReportWire>(json!({
            "incident_type": "threat", "description": "x", "descripton": "typo"
        }));
        assert!(result.is_err());
    }

    #[test]
    fn a_report_serialises_back_to_its_wire_shape() {
        let report = Report::parse(wire(design_example())).unwrap();
        let again: ReportWire =
            serde_json::from_value(serde_json::to_value(&report).unwrap()).unwrap();
        assert_eq!(again.description, report.wire().description);
        assert_eq!(again.consent.sg_report, SgReportConsent::Anonymised);
    }

    proptest! {
        #[test]
        fn any_printable_description_within_the_limit_is_accepted(text in "[^\\p{Cc}]{1,200}") {
            prop_assume!(!text.trim().is_empty());
            let report = Report::parse(wire(json!({"incident_type": "other", "description": text})));
            prop_assert!(report.is_ok());
        }

        #[test]
        fn any_rfc3339_shaped_occurred_at_is_judged_without_panicking(
            // Half the cases on the calendar's last day, where an offset can overflow.
            moment in "(9999-12-31|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
        ) {
            let result = Report::parse(wire(json!({
                "incident_type": "threat", "description": "x", "occurred_at": moment
            })));
            if let Err(rejected) = result {
                // Only the date itself may be refused, and only as impossible or future.
                prop_assert_eq!(rejected.fields.len(), 1);
                prop_assert!(rejected.fields.contains_key("occurred_at"));
            }
        }

        #[test]
        fn arbitrary_json_never_panics_the_parser(text in "\\PC{0,200}") {
            if let Ok(parsed) = serde_json::from_str::<ReportWire>(&text) {
                let _ = Report::parse(parsed);
            }
        }

        #[test]
        fn wire_shaped_json_is_judged_without_panicking_and_accepted_reports_round_trip(
            (report, damaged) in wire_shaped_report()
        ) {
            let text = serde_json::to_string(&report).unwrap();
            let Ok(parsed) = serde_json::from_str::<ReportWire>(&text) else {
                // Only a damaged report may fail the wire shape.
                prop_assert!(damaged, "{}", text);
                return Ok(());
            };
            match Report::parse(parsed) {
                Ok(accepted) => {
                    let sealed = serde_json::to_value(&accepted).unwrap();
                    prop_assert_eq!(&sealed["description"], &report["description"]);
                    let broken = broken_text_rule(&sealed);
                    prop_assert!(broken.is_none(), "{:?}", broken);
                    let again = Report::parse(serde_json::from_value(sealed.clone()).unwrap());
                    let again = again.map_err(|rejected| TestCaseError::fail(format!("{:?}", rejected.fields)))?;
                    prop_assert_eq!(serde_json::to_value(&again).unwrap(), sealed);
                    prop_assert_eq!(again.desk(), accepted.desk());
                    prop_assert_eq!(again.incident_month(), accepted.incident_month());
                    prop_assert_eq!(again.session_label(), accepted.session_label());
                }
                Err(rejected) => {
                    prop_assert!(damaged, "{:?} in {}", rejected.fields, text);
                    prop_assert!(!rejected.fields.is_empty());
                    for field in rejected.fields.keys() {
                        prop_assert!(VALIDATED_FIELDS.contains(&field.as_str()), "{}", field);
                    }
                }
            }
        }
    }

    /// Every dotted path a rejection may name: the fields that carry a validation rule.
    const VALIDATED_FIELDS: &[&str] = &[
        "desk",
        "mechanism.session",
        "mechanism.state_under_review",
        "occurred_at",
        "location",
        "perpetrator.description",
        "description",
        "blocked_submission.platform",
        "blocked_submission.reference",
        "blocked_submission.submitted_on",
        "blocked_submission.what_happened",
        "consent.contact.channel",
        "consent.contact.handle",
        "language",
    ];

    /// The one-line text fields, as JSON pointers, with their limits in characters.
    const ONE_LINE_FIELDS: &[(&str, u64)] = &[
        ("/mechanism/session", limits::SESSION_LABEL),
        ("/mechanism/state_under_review", limits::STATE_UNDER_REVIEW),
        ("/blocked_submission/platform", limits::SUBMISSION_FIELD),
        ("/blocked_submission/reference", limits::SUBMISSION_FIELD),
        ("/consent/contact/channel", limits::CONTACT_CHANNEL),
        ("/consent/contact/handle", limits::CONTACT_HANDLE),
    ];

    /// The free-text fields, as JSON pointers, with their limits in characters.
    const FREE_TEXT_FIELDS: &[(&str, u64)] = &[
        ("/location", limits::LOCATION),
        ("/perpetrator/description", limits::PERPETRATOR_DESCRIPTION),
        ("/description", limits::DESCRIPTION),
        (
            "/blocked_submission/what_happened",
            limits::SUBMISSION_WHAT_HAPPENED,
        ),
    ];

    /// The first text field of an accepted report that breaks its documented rule: over its
    /// limit, a control character (free text may hold line breaks and tabs), or in a one-line
    /// field a bidirectional override or isolate.
    fn broken_text_rule(report: &serde_json::Value) -> Option<String> {
        let fields = ONE_LINE_FIELDS
            .iter()
            .map(|(pointer, limit)| (pointer, limit, true))
            .chain(
                FREE_TEXT_FIELDS
                    .iter()
                    .map(|(pointer, limit)| (pointer, limit, false)),
            );
        for (pointer, limit, one_line) in fields {
            let Some(text) = report.pointer(pointer).and_then(serde_json::Value::as_str) else {
                continue;
            };
            let over_limit = text.chars().count() as u64 > *limit;
            let forbidden = text.chars().any(|character| {
                let bidirectional =
                    matches!(character, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
                let separator = matches!(character, '\u{2028}' | '\u{2029}');
                let line_break_or_tab = matches!(character, '\n' | '\r' | '\t');
                (character.is_control() && (one_line || !line_break_or_tab))
                    || (one_line && (bidirectional || separator))
            });
            if over_limit || forbidden {
                return Some(format!("{pointer}: {text:?}"));
            }
        }
        None
    }

    /// One line of text within `limit` characters: short printable text, or exactly `limit`
    /// characters of one, two or four bytes each.
    fn single_line_text(limit: u64) -> BoxedStrategy<String> {
        let limit = usize::try_from(limit).unwrap();
        prop_oneof![
            // Neither control characters nor Unicode's line separators (Zl, Zp).
            3 => "[^\\p{C}\\p{Zl}\\p{Zp}]{0,24}",
            1 => proptest::sample::select(vec!['a', '\u{e9}', '\u{1F4F7}'])
                .prop_map(move |character| character.to_string().repeat(limit)),
        ]
        .boxed()
    }

    /// Free text within `limit` characters: like one line, with line breaks and tabs.
    fn free_text(limit: u64) -> BoxedStrategy<String> {
        prop_oneof![
            1 => single_line_text(limit),
            1 => "[\\P{C}\n\r\t]{0,40}",
        ]
        .boxed()
    }

    /// A name from a closed vocabulary.
    fn one_of(names: Vec<&'static str>) -> BoxedStrategy<serde_json::Value> {
        proptest::sample::select(names)
            .prop_map(|name| json!(name))
            .boxed()
    }

    /// A past `occurred_at` in each of the three precisions.
    fn past_occurred_at() -> impl Strategy<Value = String> {
        prop_oneof![
            "(19[7-9][0-9]|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])",
            "(19[7-9][0-9]|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
            "(19[7-9][0-9]|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])",
        ]
    }

    /// Sets `field` of `object` when `value` is present: the wire shape's optional fields.
    fn with_optional(
        mut object: serde_json::Value,
        fields: Vec<(&str, Option<serde_json::Value>)>,
    ) -> serde_json::Value {
        for (field, value) in fields {
            if let Some(value) = value {
                object[field] = value;
            }
        }
        object
    }

    /// A valid report of the wire shape (DESIGN §4; tests/api/helpers.rs `full_report` and
    /// `minimal_report` are its two ends): required fields, each optional one present or not,
    /// with arbitrary values that keep within the rules.
    fn valid_wire_report() -> impl Strategy<Value = serde_json::Value> {
        let optional = |strategy: BoxedStrategy<serde_json::Value>| proptest::option::of(strategy);
        let text = |strategy: BoxedStrategy<String>| strategy.prop_map(|text| json!(text)).boxed();
        let mechanism = (
            one_of(MechanismKind::names()),
            optional(
                prop_oneof![
                    text(single_line_text(limits::SESSION_LABEL)),
                    one_of(vec!["UPR 45", "hrc58", "CEDAW-89"]),
                ]
                .boxed(),
            ),
            optional(text(single_line_text(limits::STATE_UNDER_REVIEW))),
        )
            .prop_map(|(kind, session, state)| {
                with_optional(
                    json!({"kind": kind}),
                    vec![("session", session), ("state_under_review", state)],
                )
            });
        let perpetrator = (
            one_of(PerpetratorKind::names()),
            optional(text(free_text(limits::PERPETRATOR_DESCRIPTION))),
        )
            .prop_map(|(kind, description)| {
                with_optional(json!({"kind": kind}), vec![("description", description)])
            });
        let blocked_submission = (
            optional(text(single_line_text(limits::SUBMISSION_FIELD))),
            optional(text(single_line_text(limits::SUBMISSION_FIELD))),
            optional(text(
                past_occurred_at()
                    .prop_filter("a date", |date| date.len() == 10)
                    .boxed(),
            )),
            optional(text(free_text(limits::SUBMISSION_WHAT_HAPPENED))),
        )
            .prop_map(|(platform, reference, submitted_on, what_happened)| {
                with_optional(
                    json!({}),
                    vec![
                        ("platform", platform),
                        ("reference", reference),
                        ("submitted_on", submitted_on),
                        ("what_happened", what_happened),
                    ],
                )
            });
        let contact = (
            any::<bool>(),
            optional(text(single_line_text(limits::CONTACT_CHANNEL))),
            optional(text(single_line_text(limits::CONTACT_HANDLE))),
        )
            .prop_map(|(allowed, channel, handle)| {
                with_optional(
                    json!({"allowed": allowed}),
                    vec![("channel", channel), ("handle", handle)],
                )
            });
        let consent = (
            proptest::option::of(any::<bool>()),
            optional(one_of(SgReportConsent::names())),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(contact),
        )
            .prop_map(|(ohchr, sg_report, partners, statistics, contact)| {
                with_optional(
                    json!({}),
                    vec![
                        ("share_with_ohchr", ohchr.map(|flag| json!(flag))),
                        ("sg_report", sg_report),
                        ("share_with_partners", partners.map(|flag| json!(flag))),
                        ("aggregate_statistics", statistics.map(|flag| json!(flag))),
                        ("contact", contact),
                    ],
                )
            });
        let description = ("[\\p{L}\\p{N}\\p{P}]", free_text(limits::DESCRIPTION - 1))
            .prop_map(|(first, rest)| json!(format!("{first}{rest}")));
        let report = (
            optional(one_of(vec!["default", "upr-45-geneva", "a", "z9"])),
            one_of(IncidentType::names()),
            optional(mechanism.boxed()),
            optional(text(past_occurred_at().boxed())),
            optional(one_of(OccurredAtPrecision::names())),
            optional(text(free_text(limits::LOCATION))),
            optional(perpetrator.boxed()),
            description,
            optional(prop_oneof![blocked_submission, Just(serde_json::Value::Null)].boxed()),
            optional(consent.boxed()),
            optional(one_of(vec!["en", "fr", "zh-Hant", "es-419", "x-abcdefgh"])),
        );
        report.prop_map(
            |(
                desk,
                incident_type,
                mechanism,
                occurred_at,
                precision,
                location,
                perpetrator,
                description,
                blocked_submission,
                consent,
                language,
            )| {
                with_optional(
                    json!({"incident_type": incident_type, "description": description}),
                    vec![
                        ("desk", desk),
                        ("mechanism", mechanism),
                        ("occurred_at", occurred_at),
                        ("occurred_at_precision", precision),
                        ("location", location),
                        ("perpetrator", perpetrator),
                        ("blocked_submission", blocked_submission),
                        ("consent", consent),
                        ("language", language),
                    ],
                )
            },
        )
    }

    /// Text a careless or hostile client might put in a text field: a control character or a
    /// bidirectional override, more than every limit, a future or impossible date, blank.
    fn hostile_text() -> impl Strategy<Value = serde_json::Value> {
        let intruder = proptest::sample::select(vec![
            '\0', '\u{7}', '\u{1b}', '\n', '\r', '\t', '\u{85}', '\u{202a}', '\u{202e}',
            '\u{2066}', '\u{2069}', '\u{2028}', '\u{2029}',
        ]);
        prop_oneof![
            4 => ("[a-z ]{0,8}", intruder, "[a-z ]{0,8}")
                .prop_map(|(before, intruder, after)| json!(format!("{before}{intruder}{after}"))),
            1 => Just(json!("x".repeat(usize::try_from(limits::DESCRIPTION).unwrap() + 1))),
            1 => Just(json!("2999-01-01")),
            1 => Just(json!("2024-02-30")),
            1 => Just(json!("+2024-01-23")),
            1 => Just(json!("-0001-01-01")),
            1 => Just(json!("")),
            1 => Just(json!("   ")),
            2 => "\\PC{0,16}".prop_map(|text| json!(text)),
        ]
    }

    /// Any value at all: hostile text, a word outside every vocabulary, or the wrong JSON type.
    fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            4 => hostile_text(),
            1 => Just(serde_json::Value::Null),
            1 => any::<i64>().prop_map(|number| json!(number)),
            1 => any::<bool>().prop_map(|flag| json!(flag)),
            1 => Just(json!([])),
            1 => Just(json!({"unexpected": 1})),
        ]
    }

    /// Dotted paths of the wire shape, with the closed vocabularies, the nested objects and one
    /// misspelt field.
    const WIRE_PATHS: &[&str] = &[
        "desk",
        "incident_type",
        "mechanism",
        "mechanism.kind",
        "mechanism.session",
        "mechanism.state_under_review",
        "occurred_at",
        "occurred_at_precision",
        "location",
        "perpetrator.kind",
        "perpetrator.description",
        "description",
        "blocked_submission.platform",
        "blocked_submission.reference",
        "blocked_submission.submitted_on",
        "blocked_submission.what_happened",
        "consent.share_with_ohchr",
        "consent.sg_report",
        "consent.contact",
        "consent.contact.allowed",
        "consent.contact.channel",
        "consent.contact.handle",
        "language",
        "descripton",
    ];

    /// A valid report, and in two cases of three that report with one to three fields
    /// overwritten (creating the field, and its parents, if absent): mostly a validated text
    /// field with hostile text, which the wire shape lets through to [`Report::parse`], else any
    /// field with any value. Returns the report and whether it was damaged.
    fn wire_shaped_report() -> impl Strategy<Value = (serde_json::Value, bool)> {
        let one_damage = prop_oneof![
            3 => (proptest::sample::select(VALIDATED_FIELDS), hostile_text()),
            1 => (proptest::sample::select(WIRE_PATHS), hostile_value()),
        ];
        let damage = prop_oneof![
            1 => Just(Vec::new()),
            2 => proptest::collection::vec(one_damage, 1..=3),
        ];
        (valid_wire_report(), damage).prop_map(|(mut report, damage)| {
            let damaged = !damage.is_empty();
            for (path, value) in damage {
                let mut place = &mut report;
                for field in path.split('.') {
                    if !place.is_object() {
                        *place = json!({});
                    }
                    place = &mut place[field];
                }
                *place = value;
            }
            (report, damaged)
        })
    }

    #[test]
    fn wire_shaped_reports_reach_both_verdicts_of_the_validation() {
        // A fixed seed, so this counts the same inputs on every run.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = wire_shaped_report();
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..256 {
            let (report, _) = strategy.new_tree(&mut runner).unwrap().current();
            if let Ok(wire) = serde_json::from_value::<ReportWire>(report) {
                match Report::parse(wire) {
                    Ok(_) => accepted += 1,
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(accepted >= 40, "{accepted} of 256 reports accepted");
        assert!(
            refused >= 25,
            "{refused} of 256 reports refused by validation"
        );
    }
}
