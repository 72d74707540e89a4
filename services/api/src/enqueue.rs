//! Parsing and validating the `POST /enqueue` body. Pure: no I/O, so every rejection is
//! decided before anything is written.

use foodseg_engine::netguard::{NetPolicy, validate_url};
use salvo::oapi::ToSchema;
use serde_json::Value;

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body of `POST /enqueue`. Sent as JSON whatever the declared Content-Type
/// (MFR declares `application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
pub struct EnqueueRequest {
    /// http(s) URL of the image, at most 2,048 characters.
    pub image_url: String,
    /// A model name or alias (e.g. `"124096"`); null or absent for the default model.
    pub model_id: Option<String>,
    /// http(s) URL that receives the finished job document; null or absent for none.
    pub webhook_url: Option<String>,
}

/// Parses and checks a raw body; `policy` refuses IP-literal hosts that are not public.
/// Fields other than the three of the contract are ignored.
pub fn parse(body: &[u8], policy: &NetPolicy) -> Result<EnqueueRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ApiError::NotAnObject(kind(&value)));
    };
    let image_url = match map.get("image_url") {
        None | Some(Value::Null) => return Err(ApiError::MissingField { field: "image_url" }),
        Some(v) => string_field("image_url", v)?,
    };
    let image_url = check_url("image_url", image_url, policy)?;
    let model_id = optional_string("model_id", map.get("model_id"))?;
    let webhook_url = optional_string("webhook_url", map.get("webhook_url"))?
        .map(|url| check_url("webhook_url", url, policy))
        .transpose()?;
    Ok(EnqueueRequest {
        image_url,
        model_id,
        webhook_url,
    })
}

fn string_field(field: &'static str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err(ApiError::EmptyField { field }),
        Value::String(s) => Ok(s.clone()),
        other => Err(ApiError::InvalidType {
            field,
            expected: "a string",
            got: kind(other),
        }),
    }
}

fn optional_string(field: &'static str, v: Option<&Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ApiError::EmptyField { field }),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::InvalidType {
            field,
            expected: "a string or null",
            got: kind(other),
        }),
    }
}

pub(crate) fn check_url(
    field: &'static str,
    raw: String,
    policy: &NetPolicy,
) -> Result<String, ApiError> {
    let invalid = |reason: String| ApiError::InvalidUrl { field, reason };
    let url = validate_url(&raw).map_err(|e| invalid(e.to_string()))?;
    policy
        .check_url_host(&url)
        .map_err(|e| invalid(format!("is refused: {e}")))?;
    // The URL is stored as the client sent it: MFR matches on it.
    Ok(raw)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> Result<EnqueueRequest, ApiError> {
        parse(body.as_bytes(), &NetPolicy::default())
    }

    fn code(body: &str) -> (&'static str, Option<String>) {
        let e = p(body).unwrap_err();
        (e.code(), e.body().error.field)
    }

    #[test]
    fn accepts_the_contract_body() {
        let r = p(r#"{"image_url":"https://x.org/a.jpg","model_id":"124096","webhook_url":"http://h.org/w"}"#)
            .unwrap();
        assert_eq!(r.image_url, "https://x.org/a.jpg");
        assert_eq!(r.model_id.as_deref(), Some("124096"));
        assert_eq!(r.webhook_url.as_deref(), Some("http://h.org/w"));
        let r = p(r#"{"image_url":"https://x.org/a.jpg","model_id":null,"extra":1}"#).unwrap();
        assert_eq!(r.model_id, None);
        assert_eq!(r.webhook_url, None);
    }

    #[test]
    fn rejections_name_their_field() {
        assert_eq!(code("{"), ("invalid_json", None));
        assert_eq!(code("[1]"), ("invalid_json", None));
        assert_eq!(code("{}"), ("missing_field", Some("image_url".into())));
        assert_eq!(
            code(r#"{"image_url":null}"#),
            ("missing_field", Some("image_url".into()))
        );
        assert_eq!(
            code(r#"{"image_url":" "}"#),
            ("empty_field", Some("image_url".into()))
        );
        assert_eq!(
            code(r#"{"image_url":5}"#),
            ("invalid_type", Some("image_url".into()))
        );
        assert_eq!(
            code(r#"{"image_url":"ftp://x.org/a"}"#),
            ("invalid_url", Some("image_url".into()))
        );
        let long = format!(r#"{{"image_url":"https://x.org/{}"}}"#, "a".repeat(2100));
        assert_eq!(code(&long), ("invalid_url", Some("image_url".into())));
        assert_eq!(
            code(r#"{"image_url":"https://x.org/a","model_id":124096}"#),
            ("invalid_type", Some("model_id".into()))
        );
        assert_eq!(
            code(r#"{"image_url":"https://x.org/a","webhook_url":"file:///etc/passwd"}"#),
            ("invalid_url", Some("webhook_url".into()))
        );
        assert_eq!(
            code(r#"{"image_url":"https://x.org/a","webhook_url":""}"#),
            ("empty_field", Some("webhook_url".into()))
        );
    }

    #[test]
    fn private_ip_literals_are_refused_unless_allowed() {
        let body = br#"{"image_url":"http://127.0.0.1:8080/a.jpg"}"#;
        assert_eq!(
            parse(body, &NetPolicy::default()).unwrap_err().code(),
            "invalid_url"
        );
        let allow = NetPolicy::parse_allow_list("127.0.0.0/8").unwrap();
        assert!(parse(body, &allow).is_ok());
    }
}
