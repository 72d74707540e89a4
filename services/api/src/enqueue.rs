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
    parse_fields(&map, policy)
}

/// The three fields of the contract from a JSON object (an `/enqueue` body, or one job of
/// a batch).
pub(crate) fn parse_fields(
    map: &serde_json::Map<String, Value>,
    policy: &NetPolicy,
) -> Result<EnqueueRequest, ApiError> {
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

pub(crate) fn string_field(field: &'static str, v: &Value) -> Result<String, ApiError> {
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

pub(crate) fn optional_string(
    field: &'static str,
    v: Option<&Value>,
) -> Result<Option<String>, ApiError> {
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
    // The URL parser escapes a NUL, but the job's text columns cannot hold one.
    if raw.contains('\0') {
        return Err(invalid("contains a NUL character".into()));
    }
    let url = validate_url(&raw).map_err(|e| invalid(e.to_string()))?;
    policy
        .check_url_host(&url)
        .map_err(|e| invalid(format!("is refused: {e}")))?;
    // The URL is stored as the client sent it: MFR matches on it.
    Ok(raw)
}

pub(crate) fn kind(v: &Value) -> &'static str {
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
        // Accepted by the URL parser (it escapes it), but no text column can hold NUL.
        assert_eq!(
            code(r#"{"image_url":"https://x.org/a\u0000.jpg"}"#),
            ("invalid_url", Some("image_url".into()))
        );
        assert_eq!(
            code(r#"{"image_url":"https://x.org/a","webhook_url":"https://h.org/\u0000"}"#),
            ("invalid_url", Some("webhook_url".into()))
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

#[cfg(test)]
mod properties {
    use super::*;
    use foodseg_engine::netguard::MAX_URL_LEN;
    use proptest::prelude::*;
    use salvo::http::StatusCode;
    use serde_json::{Map, json};

    /// URLs the contract accepts: http(s), a host name, a path, at most 2,048 bytes.
    fn good_url() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("http"), Just("https"), Just("HTTPS")],
            "[a-z][a-z0-9-]{0,12}(\\.[a-z]{2,6}){1,2}",
            prop_oneof![
                Just(String::new()),
                (1u16..65535).prop_map(|p| format!(":{p}"))
            ],
            "(/[A-Za-z0-9._~%-]{0,16}){0,4}",
            prop_oneof![
                Just(String::new()),
                "\\?[a-z]=[0-9]{0,6}".prop_map(String::from)
            ],
        )
            .prop_map(|(scheme, host, port, path, query)| {
                format!("{scheme}://{host}{port}{path}{query}")
            })
    }

    /// Strings that look like URLs but are not acceptable ones, and other strings.
    fn other_string() -> impl Strategy<Value = String> {
        prop_oneof![
            // Around the length limit, either side of it.
            (MAX_URL_LEN - 20..MAX_URL_LEN + 20)
                .prop_map(|n| format!("https://x.org/{}", "a".repeat(n - 14))),
            (MAX_URL_LEN / 3 - 10..MAX_URL_LEN / 3 + 10)
                .prop_map(|n| format!("https://x.org/{}", "é".repeat(n))),
            Just("ftp://x.org/a.jpg".to_owned()),
            Just("file:///etc/passwd".to_owned()),
            Just("https://".to_owned()),
            Just("https:///a.jpg".to_owned()),
            Just("data:image/png;base64,iVBORw0KGgo=".to_owned()),
            Just("javascript:alert(1)".to_owned()),
            Just("http://127.0.0.1/a.jpg".to_owned()),
            Just("http://[::1]/a.jpg".to_owned()),
            Just("http://例え.jp/パス.jpg".to_owned()),
            Just(" https://x.org/a.jpg ".to_owned()),
            Just("https://x.org/a\nb.jpg".to_owned()),
            Just("https://x.org/a\u{0}.jpg".to_owned()),
            Just("x.org/a.jpg".to_owned()),
            Just(String::new()),
            Just(" \t\n".to_owned()),
            Just("\u{a0}".to_owned()),
            any::<String>(),
            "[a-z:/.%?&=\\[\\]@ -]{0,40}",
        ]
    }

    /// Any JSON value, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            other_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{0,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A value for one of the contract's fields: absent (`None`), or any JSON value,
    /// mostly strings.
    fn field() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            2 => Just(None),
            4 => good_url().prop_map(|u| Some(Value::String(u))),
            3 => other_string().prop_map(|s| Some(Value::String(s))),
            2 => any_json().prop_map(Some),
        ]
    }

    /// A JSON object with the three fields (each maybe absent or mistyped) and extra keys.
    fn body_object() -> impl Strategy<Value = Map<String, Value>> {
        (
            field(),
            field(),
            field(),
            proptest::collection::btree_map("[a-z_]{1,12}", any_json(), 0..3),
        )
            .prop_map(|(image_url, model_id, webhook_url, extra)| {
                let mut map: Map<String, Value> = extra.into_iter().collect();
                for (name, value) in [
                    ("image_url", image_url),
                    ("model_id", model_id),
                    ("webhook_url", webhook_url),
                ] {
                    match value {
                        Some(v) => map.insert(name.to_owned(), v),
                        None => map.remove(name),
                    };
                }
                map
            })
    }

    /// What `parse` must answer for a JSON object, worked out field by field in the
    /// contract's order: `Ok` or the error's code and field.
    fn expected(
        map: &Map<String, Value>,
        policy: &NetPolicy,
    ) -> Result<(), (&'static str, &'static str)> {
        // Postgres text cannot hold NUL, so a URL with one could not be stored.
        let url_ok = |s: &str| {
            !s.contains('\0') && validate_url(s).is_ok_and(|u| policy.check_url_host(&u).is_ok())
        };
        let check = |name: &'static str, required: bool, is_url: bool| match map.get(name) {
            None | Some(Value::Null) if required => Err(("missing_field", name)),
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s.trim().is_empty() => Err(("empty_field", name)),
            Some(Value::String(s)) if is_url && !url_ok(s) => Err(("invalid_url", name)),
            Some(Value::String(_)) => Ok(()),
            Some(_) => Err(("invalid_type", name)),
        };
        check("image_url", true, true)?;
        check("model_id", false, false)?;
        check("webhook_url", false, true)
    }

    /// Every rejection is a client error with a stable code and a message.
    fn assert_rejection(e: &ApiError) -> Result<(), TestCaseError> {
        prop_assert!(e.status().is_client_error(), "{e:?}: {}", e.status());
        prop_assert!(
            [
                "invalid_json",
                "missing_field",
                "empty_field",
                "invalid_type",
                "invalid_url"
            ]
            .contains(&e.code()),
            "{}",
            e.code()
        );
        let body = e.body();
        prop_assert_eq!(body.error.code, e.code());
        prop_assert!(!body.error.message.trim().is_empty());
        Ok(())
    }

    /// Every acceptance holds URLs the fetcher and the webhook sender will accept.
    fn assert_acceptance(r: &EnqueueRequest) -> Result<(), TestCaseError> {
        for url in std::iter::once(&r.image_url).chain(&r.webhook_url) {
            let parsed = validate_url(url);
            prop_assert!(parsed.is_ok(), "{url:?}: {parsed:?}");
            let parsed = parsed.unwrap();
            prop_assert!(matches!(parsed.scheme(), "http" | "https"));
            prop_assert!(url.len() <= MAX_URL_LEN);
            prop_assert!(!url.contains('\0'), "{url:?} cannot be stored");
        }
        if let Some(model_id) = &r.model_id {
            prop_assert!(!model_id.trim().is_empty());
        }
        Ok(())
    }

    fn check_any(body: &[u8]) -> Result<(), TestCaseError> {
        match parse(body, &NetPolicy::default()) {
            Ok(r) => assert_acceptance(&r),
            Err(e) => assert_rejection(&e),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Bytes of any kind, and form-encoded or truncated bodies, never panic.
        #[test]
        fn any_bytes_are_accepted_or_rejected_cleanly(
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                "[a-z_]{1,12}=[A-Za-z0-9%.:/]{0,30}(&[a-z_]{1,12}=[A-Za-z0-9%.]{0,10}){0,2}"
                    .prop_map(String::into_bytes),
                (body_object(), any::<prop::sample::Index>()).prop_map(|(map, cut)| {
                    let text = serde_json::to_vec(&Value::Object(map)).unwrap();
                    text[..cut.index(text.len() + 1)].to_vec()
                }),
                (body_object(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
                    |(map, at, byte)| {
                        let mut text = serde_json::to_vec(&Value::Object(map)).unwrap();
                        let i = at.index(text.len());
                        text[i] = byte;
                        text
                    },
                ),
            ],
        ) {
            check_any(&body)?;
        }

        /// JSON that is not an object is rejected as such.
        #[test]
        fn json_other_than_an_object_is_invalid_json(value in any_json()) {
            let body = serde_json::to_vec(&value).unwrap();
            match parse(&body, &NetPolicy::default()) {
                Ok(r) => {
                    prop_assert!(value.is_object(), "{value} accepted");
                    assert_acceptance(&r)?;
                }
                Err(e) => {
                    assert_rejection(&e)?;
                    if !value.is_object() {
                        prop_assert_eq!(e.code(), "invalid_json");
                        prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                    }
                }
            }
        }

        /// Objects get exactly the answer the contract gives, field by field; accepted
        /// bodies are returned as sent.
        #[test]
        fn objects_are_judged_field_by_field(map in body_object()) {
            let policy = NetPolicy::default();
            let body = serde_json::to_vec(&Value::Object(map.clone())).unwrap();
            let got = parse(&body, &policy);
            match (&got, expected(&map, &policy)) {
                (Ok(r), Ok(())) => {
                    assert_acceptance(r)?;
                    prop_assert_eq!(Some(&Value::String(r.image_url.clone())), map.get("image_url"));
                    let same = |v: &Option<String>, name| {
                        v.clone().map(Value::String) == map.get(name).filter(|v| !v.is_null()).cloned()
                    };
                    prop_assert!(same(&r.model_id, "model_id"), "{:?}", r);
                    prop_assert!(same(&r.webhook_url, "webhook_url"), "{:?}", r);
                }
                (Err(e), Err((code, field))) => {
                    assert_rejection(e)?;
                    prop_assert_eq!(e.code(), code);
                    prop_assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
                    prop_assert_eq!(e.body().error.field, Some(field.to_owned()));
                    prop_assert!(e.to_string().contains(field), "{}", e);
                }
                (got, want) => prop_assert!(false, "got {got:?}, want {want:?} for {map:?}"),
            }
        }

        /// Well-formed http(s) URLs are accepted, up to the length limit and not past it.
        #[test]
        fn good_urls_are_accepted(url in good_url(), pad in 0usize..2100) {
            let long = format!("{url}{}{}", if url.contains('?') { "" } else { "?" }, "a".repeat(pad));
            for candidate in [&url, &long] {
                let body = json!({ "image_url": candidate, "webhook_url": url });
                let got = parse(body.to_string().as_bytes(), &NetPolicy::default());
                if candidate.len() <= MAX_URL_LEN {
                    prop_assert_eq!(got.map(|r| r.image_url).ok(), Some(candidate.clone()));
                } else {
                    prop_assert_eq!(got.map_err(|e| e.code()).err(), Some("invalid_url"));
                }
            }
        }
    }
}
