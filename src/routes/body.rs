//! Reading a JSON body with explicit limits: size (413), time (408), media type (415),
//! syntax (400) and shape (422 naming the field).

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::RequestLimits;
use crate::error::ApiError;

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
    let mut body = Zeroizing::new(Vec::with_capacity(declared.unwrap_or(4096).min(limit)));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::BadRequest {
                code: "body_unreadable",
                message: "The request body could not be read.".into(),
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
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
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            message: "Send the report as Content-Type: application/json.".into(),
        })
    }
}

/// Syntax errors are a 400; a well-formed document of the wrong shape is a 422 that names the
/// field by its dotted path.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ApiError::BadRequest {
            code: "malformed_json",
            message: format!(
                "The body is not valid JSON (line {}, column {}).",
                error.line(),
                error.column()
            ),
        })?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        let missing = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "body".to_owned(),
            _ => path,
        };
        let code = if reason.starts_with("unknown variant") {
            "unknown_value"
        } else if reason.starts_with("unknown field") {
            "unknown_field"
        } else if reason.starts_with("missing field") {
            "missing_field"
        } else {
            "invalid_type"
        };
        ApiError::invalid_field(code, &field, reason)
    })
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
    fn wrong_types_and_unknown_fields_are_named() {
        assert_eq!(
            code_and_fields(r#"{"incident_type": "threat", "description": 5}"#),
            ("invalid_type".to_owned(), vec!["description".to_owned()])
        );
        assert_eq!(
            code_and_fields(r#"{"incident_type": "threat", "description": "x", "extra": 1}"#).0,
            "unknown_field"
        );
    }
}
