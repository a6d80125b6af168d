//! Reading a JSON body with explicit limits: size (413), time (408), media type (415),
//! syntax (400) and shape (422 naming the field).

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::RequestLimits;
use crate::error::ApiError;

/// The first buffer of a body sent without Content-Length (chunked): a typical report fits.
const CHUNKED_START_BYTES: usize = 16 * 1024;

/// Reads and deserialises a JSON body. The raw bytes are zeroized once parsed: they are report
/// content in the clear.
pub async fn read_json<T: DeserializeOwned>(
    request: &HttpRequest,
    mut payload: web::Payload,
    limits: &RequestLimits,
) -> Result<T, ApiError> {
    require_json(request)?;
    let limit = limits.json_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Sized up front from Content-Length. A chunked body, which declares none, starts small
    // and grows by doubling into a fresh buffer, the old one wiped as it is dropped: `Vec`'s own
    // growth would leave unwiped copies of the text behind, and reserving the whole limit for
    // every chunked request would hold (and, when wiped, touch) 256 KiB per connection.
    let mut body = Zeroizing::new(Vec::with_capacity(
        declared.unwrap_or(CHUNKED_START_BYTES).min(limit),
    ));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::BadRequest {
                code: "body_unreadable",
                message: "The request body could not be read.".into(),
            })?;
            let needed = body.len() + chunk.len();
            if needed > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            if needed > body.capacity() {
                let capacity = needed.max(2 * body.capacity()).min(limit);
                let mut larger = Zeroizing::new(Vec::with_capacity(capacity));
                larger.extend_from_slice(&body);
                body = larger;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(limits.body_timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
    parse_json(&body)
}

fn require_json(request: &HttpRequest) -> Result<(), ApiError> {
    let mut content_types = request.headers().get_all(header::CONTENT_TYPE);
    let first = content_types.next();
    // Two that differ (in more than letter case): which one the body is cannot be known.
    let differs = |other: &header::HeaderValue| {
        first.is_none_or(|first| !first.as_bytes().eq_ignore_ascii_case(other.as_bytes()))
    };
    if content_types.any(differs) {
        return Err(ApiError::UnsupportedMediaType {
            message: "Send one Content-Type: application/json.".into(),
        });
    }
    let content_type = first.and_then(|value| value.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType {
            message: "Send the body as Content-Type: application/json.".into(),
        });
    }
    // Bodies are read as sent: a compressed one would otherwise be refused as malformed JSON,
    // which sends a client's developer looking in the wrong place.
    let encoded = request
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ApiError::UnsupportedMediaType {
            message: "Send the body uncompressed, without Content-Encoding.".into(),
        });
    }
    Ok(())
}

/// Syntax errors are a 400; a well-formed document of the wrong shape is a 422 that names the
/// field by its dotted path. Parsed straight from the bytes (no intermediate copy of the text),
/// and no message repeats what the client sent: serde's own messages quote the input.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let malformed = |error: &serde_json::Error| ApiError::BadRequest {
        code: "malformed_json",
        message: format!(
            "The body is not valid JSON (line {}, column {}).",
            error.line(),
            error.column()
        ),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // Every body is an object: serde's derive alone would also take an array of field values.
    let crate::domain::wire::Object(parsed) = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| {
        let path = error.path().to_string();
        // The object that holds the failing key, from the path's segments: the last segment may
        // be a key the client chose, dots included, so it is dropped whole, never split.
        let segments = error.path().iter().collect::<Vec<_>>();
        let parent = join_segments(&segments[..segments.len().saturating_sub(1)]);
        let inner = error.into_inner();
        // A number beyond what a double holds (`1e400`, 5,000 digits) is valid JSON, whose RFC
        // leaves the range to implementations; serde_json calls it a syntax error. It is a value
        // that no field of ours can take, named like any other value of the wrong type.
        // Only in a body that is JSON throughout (`IgnoredAny` skips numbers without reading
        // their value): one cut off after such a number is malformed, as any other cut one.
        if inner.is_syntax()
            && inner.to_string().starts_with("number out of range")
            && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
            && std::str::from_utf8(body).is_ok()
        {
            let field = if path == "." { "body".to_owned() } else { path };
            return ApiError::invalid_field(
                "invalid_type",
                &field,
                "is a number out of range".to_owned(),
            );
        }
        if !inner.is_data() {
            return malformed(&inner);
        }
        // serde stops at the first fault, which may be one of shape in a body that is not JSON
        // at all (cut off by a broken upload, say): that body is malformed, whatever else.
        if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return malformed(&syntax);
        }
        // IgnoredAny skips strings without checking their UTF-8.
        if std::str::from_utf8(body).is_err() {
            return ApiError::BadRequest {
                code: "malformed_json",
                message: "The body is not valid JSON (it is not UTF-8).".into(),
            };
        }
        shape_error(&path, &parent, &inner.to_string())
    })?;
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(parsed)
}

/// Segments written as `serde_path_to_error` writes a path (`consent.contact`, `items[2].kind`),
/// or `body` for none.
fn join_segments(segments: &[&serde_path_to_error::Segment]) -> String {
    let mut joined = String::new();
    for segment in segments {
        if !joined.is_empty() && !matches!(segment, serde_path_to_error::Segment::Seq { .. }) {
            joined.push('.');
        }
        joined.push_str(&segment.to_string());
    }
    if joined.is_empty() {
        "body".to_owned()
    } else {
        joined
    }
}

/// A 422 for a document of the wrong shape. `reason` is serde's message, which may quote the
/// input: only the parts that come from our own types (field names, expectations) are kept.
/// `parent` names the object holding the failing key.
fn shape_error(path: &str, parent: &str, reason: &str) -> ApiError {
    let expected = reason
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected);
    let (code, field, message) = if reason.starts_with("unknown variant") {
        let message = match expected {
            Some(expected) => format!("is not an allowed value; expected {expected}"),
            None => "is not an allowed value".to_owned(),
        };
        ("unknown_value", path.to_owned(), message)
    } else if reason.starts_with("unknown field") {
        // The path ends with the client's key: name the object that holds it instead.
        let message = match expected {
            Some(expected) => {
                format!("holds a field that is not part of this request; expected {expected}")
            }
            None => "holds a field that is not part of this request".to_owned(),
        };
        ("unknown_field", parent.to_owned(), message)
    } else if let Some((code, name, message)) = [
        (
            "duplicate_field",
            "duplicate field `",
            "appears more than once",
        ),
        ("missing_field", "missing field `", "is required"),
    ]
    .into_iter()
    .find_map(|(code, prefix, message)| {
        let name = reason.strip_prefix(prefix)?.split('`').next()?;
        Some((code, name, message))
    }) {
        // Raised by the object that holds the key twice, or lacks it, before any value of it is
        // read: `path` names that object, and `name` is one of our own field names.
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        (code, field, message.to_owned())
    } else {
        let message = match expected {
            Some(expected) => format!("has the wrong type; expected {expected}"),
            None => "has the wrong type".to_owned(),
        };
        let field = if path == "." {
            "body".to_owned()
        } else {
            path.to_owned()
        };
        ("invalid_type", field, message)
    };
    ApiError::invalid_field(code, &field, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReportWire;

    fn code_and_fields(body: &str) -> (String, Vec<String>) {
        match parse_json::<ReportWire>(body.as_bytes()) {
            Err(ApiError::Unprocessable { code, fields, .. }) => {
                (code.to_owned(), fields.into_keys().collect())
            }
            Err(other) => (other.code().to_owned(), vec![]),
            Ok(_) => ("ok".into(), vec![]),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert_eq!(code_and_fields("{\"incident_type\": ").0, "malformed_json");
    }

    #[test]
    fn an_unknown_nested_enum_value_names_its_path() {
        let (code, fields) = code_and_fields(
            r#"{"incident_type": "threat", "description": "x", "mechanism": {"kind": "upr2"}}"#,
        );
        assert_eq!(code, "unknown_value");
        assert_eq!(fields, vec!["mechanism.kind".to_owned()]);
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let (code, fields) = code_and_fields(r#"{"description": "x"}"#);
        assert_eq!(code, "missing_field");
        assert_eq!(fields, vec!["incident_type".to_owned()]);
    }

    #[test]
    fn no_message_repeats_what_the_client_sent() {
        for body in [
            r#"{"incident_type": "Colonel Secret", "description": "x"}"#,
            r#"{"incident_type": "threat", "description": "x", "perpetrator": "Colonel Secret"}"#,
            r#"{"incident_type": "threat", "description": "x", "Colonel Secret": 1}"#,
            r#"{"incident_type": "threat", "description": "x", "Colonel.Secret": 1}"#,
            r#"{"incident_type": "threat", "description": "x", "consent": {"Colonel.Secret": 1}}"#,
            r#"{"incident_type": "threat", "description": "x"} Colonel Secret"#,
        ] {
            let error = parse_json::<ReportWire>(body.as_bytes()).err().unwrap();
            let shown = format!("{error} {:?}", error.log_detail());
            let fields = match &error {
                ApiError::Unprocessable { fields, .. } => format!("{fields:?}"),
                _ => String::new(),
            };
            assert!(
                !shown.contains("Colonel") && !fields.contains("Colonel"),
                "{shown} {fields}"
            );
        }
    }

    /// A body cut off or garbled after a fault of shape is still malformed JSON, not a 422.
    #[test]
    fn a_body_that_is_not_json_is_malformed_even_after_a_fault_of_shape() {
        for body in [
            "[",
            "[}",
            "5 garbage",
            r#"{"incident_type":"nope""#,
            r#"{"incident_type":"threat","description":"x","x":"#,
            r#"{"incident_type":"threat","description":5,,,,"#,
            r#"{"incident_type":"threat","description":"x","description":"#,
        ] {
            assert_eq!(code_and_fields(body).0, "malformed_json", "{body}");
        }
    }

    /// A number too large for a double is a value of the wrong type, named by its field: the
    /// document is valid JSON.
    #[test]
    fn a_number_out_of_range_is_a_422_naming_its_field() {
        let digits = "9".repeat(5000);
        for (body, field) in [
            (
                r#"{"incident_type":"threat","description":"x","consent":{"share_with_ohchr":1e400}}"#.to_owned(),
                "consent.share_with_ohchr",
            ),
            (
                format!(r#"{{"incident_type":"threat","description":"x","consent":{{"share_with_ohchr":{digits}}}}}"#),
                "consent.share_with_ohchr",
            ),
            (r#"{"incident_type":-1e400,"description":"x"}"#.to_owned(), "incident_type"),
            (r#"{"incident_type":"threat","description":1e999}"#.to_owned(), "description"),
        ] {
            assert_eq!(
                code_and_fields(&body),
                ("invalid_type".to_owned(), vec![field.to_owned()]),
                "{}",
                &body[..body.len().min(120)]
            );
        }
    }

    /// A body cut off after such a number is malformed, as any other cut body.
    #[test]
    fn a_cut_body_with_a_number_out_of_range_is_malformed_json() {
        for body in [
            r#"{"incident_type":"threat","description":1e400,,,"#,
            r#"{"incident_type":"threat","description":1e400"#,
            r#"{"description":1e400} trailing"#,
        ] {
            assert_eq!(code_and_fields(body).0, "malformed_json", "{body}");
        }
    }

    #[test]
    fn trailing_garbage_is_malformed_json() {
        assert_eq!(
            code_and_fields(r#"{"incident_type": "threat", "description": "x"} {"#).0,
            "malformed_json"
        );
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_named() {
        assert_eq!(
            code_and_fields(r#"{"incident_type": "threat", "description": 5}"#),
            ("invalid_type".to_owned(), vec!["description".to_owned()])
        );
        assert_eq!(
            code_and_fields(r#"{"incident_type": "threat", "description": "x", "extra": 1}"#),
            ("unknown_field".to_owned(), vec!["body".to_owned()])
        );
        assert_eq!(
            code_and_fields(
                r#"{"incident_type": "threat", "description": "x", "consent": {"gps": 1}}"#
            ),
            ("unknown_field".to_owned(), vec!["consent".to_owned()])
        );
        assert_eq!(
            code_and_fields(
                r#"{"incident_type": "threat", "description": "x", "consent": {"a.b.c": 1}}"#
            ),
            ("unknown_field".to_owned(), vec!["consent".to_owned()])
        );
    }

    /// serde's derive alone took a struct from an array of its field values in order, and a
    /// vocabulary value from `{"threat": null}`: both filed a report.
    #[test]
    fn arrays_for_objects_and_objects_for_values_are_type_errors_at_their_path() {
        for (body, field) in [
            (
                r#"["default", "threat", null, null, null, null, null, "x"]"#,
                "body",
            ),
            (
                r#"{"incident_type": "threat", "description": "x", "mechanism": ["upr"]}"#,
                "mechanism",
            ),
            (
                r#"{"incident_type": "threat", "description": "x", "consent": [true]}"#,
                "consent",
            ),
            (
                r#"{"incident_type": "threat", "description": "x",
                    "consent": {"contact": [true, "signal", "h"]}}"#,
                "consent.contact",
            ),
            (
                r#"{"incident_type": {"threat": null}, "description": "x"}"#,
                "incident_type",
            ),
            (
                r#"{"incident_type": "threat", "description": "x",
                    "mechanism": {"kind": {"upr": null}}}"#,
                "mechanism.kind",
            ),
        ] {
            assert_eq!(
                code_and_fields(body),
                ("invalid_type".to_owned(), vec![field.to_owned()]),
                "{body}"
            );
        }
    }

    /// A wrong type for a vocabulary value is valid JSON: a 422 naming the field, not a 400.
    #[test]
    fn a_vocabulary_value_of_the_wrong_type_is_named() {
        for (body, field) in [
            (
                r#"{"incident_type": null, "description": "x"}"#,
                "incident_type",
            ),
            (
                r#"{"incident_type": 5, "description": "x"}"#,
                "incident_type",
            ),
            (
                r#"{"incident_type": "threat", "description": "x", "mechanism": {"kind": true}}"#,
                "mechanism.kind",
            ),
            (
                r#"{"incident_type": "threat", "description": "x", "consent": {"sg_report": null}}"#,
                "consent.sg_report",
            ),
            (
                r#"{"incident_type": "threat", "description": "x", "occurred_at_precision": 1}"#,
                "occurred_at_precision",
            ),
        ] {
            assert_eq!(
                code_and_fields(body),
                ("invalid_type".to_owned(), vec![field.to_owned()]),
                "{body}"
            );
        }
    }

    #[test]
    fn a_key_given_twice_is_named() {
        assert_eq!(
            code_and_fields(
                r#"{"incident_type": "threat", "description": "a", "description": "b"}"#
            ),
            ("duplicate_field".to_owned(), vec!["description".to_owned()])
        );
        assert_eq!(
            code_and_fields(
                r#"{"incident_type": "threat", "description": "x",
                    "consent": {"share_with_ohchr": true, "share_with_ohchr": false}}"#
            ),
            (
                "duplicate_field".to_owned(),
                vec!["consent.share_with_ohchr".to_owned()]
            )
        );
    }
}
