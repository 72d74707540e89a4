//! The `Idempotency-Key` request header of `POST /enqueue` and `POST /v2/uploads`: its
//! checks and the fingerprint of the request it came with. Pure: no I/O.
//!
//! A retried request with the same key and the same request answers the job the first
//! one created (`Idempotency-Replayed: true`); the same key with another request is
//! refused with 422. Requests without the header are never deduplicated.

use std::time::Duration;

use foodseg_engine::store::{IdempotencyKey, IdempotencyScope};
use salvo::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer header saying the job document is the one an earlier request created.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;
/// Default `FOODSEG_IDEMPOTENCY_HOURS`.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(48 * 3600);

/// The header's value, when present: 1–255 printable ASCII characters (space included,
/// not at either end).
pub fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey("must be sent once"));
    }
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey("must be printable ASCII"))?;
    check_key(key).map(|()| Some(key.to_string()))
}

pub(crate) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.trim().is_empty() {
        return Err(ApiError::InvalidIdempotencyKey("must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::InvalidIdempotencyKey(
            "must be at most 255 characters",
        ));
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) || key.trim() != key {
        return Err(ApiError::InvalidIdempotencyKey(
            "must be printable ASCII without leading or trailing spaces",
        ));
    }
    Ok(())
}

/// Builds the fingerprint of a request from its parts, each length-prefixed so that no
/// two different requests share one.
#[derive(Debug, Clone, Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// Starts a fingerprint for a route (the same key on two routes is two requests).
    pub fn new(route: &str) -> Self {
        Fingerprint::default().part(route.as_bytes())
    }

    /// Adds one part.
    pub fn part(mut self, bytes: &[u8]) -> Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds an optional part (absent differs from empty).
    pub fn optional(self, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.part(b"some").part(v.as_bytes()),
            None => self.part(b"none"),
        }
    }

    /// The key with its scope and this fingerprint, kept for `keep`.
    pub fn key(self, key: String, scope: IdempotencyScope, keep: Duration) -> IdempotencyKey {
        IdempotencyKey {
            scope,
            key,
            request_hash: self.0.finalize().into(),
            keep,
        }
    }
}

/// The request's `Idempotency-Key` header, checked (a handler argument, documented in
/// the OpenAPI document).
pub struct KeyHeader(pub Result<Option<String>, ApiError>);

impl<'ex> salvo::Extractible<'ex> for KeyHeader {
    fn metadata() -> &'static salvo::extract::Metadata {
        static METADATA: salvo::extract::Metadata = salvo::extract::Metadata::new("KeyHeader");
        &METADATA
    }

    #[allow(refining_impl_trait)]
    async fn extract(
        req: &'ex mut salvo::Request,
        _depot: &'ex mut salvo::Depot,
    ) -> Result<Self, salvo::http::ParseError> {
        Ok(KeyHeader(header_key(req.headers())))
    }
}

impl salvo::oapi::EndpointArgRegister for KeyHeader {
    fn register(
        _components: &mut salvo::oapi::Components,
        operation: &mut salvo::oapi::Operation,
        _arg: &str,
    ) {
        operation.parameters.insert(
            salvo::oapi::Parameter::new("Idempotency-Key")
                .location(salvo::oapi::ParameterIn::Header)
                .required(salvo::oapi::Required::False)
                .description(
                    "A client's unique key for this request (1–255 printable ASCII \
                     characters): a retry with the same key and request answers the job the \
                     first request created instead of creating another.",
                )
                .schema(
                    salvo::oapi::Object::with_type(salvo::oapi::BasicType::String)
                        .min_length(1)
                        .max_length(MAX_KEY_LEN)
                        .pattern("^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"),
                ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salvo::http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(header_key(&headers(&[])).unwrap(), None);
        assert_eq!(
            header_key(&headers(&[b"order-42 retry"])).unwrap(),
            Some("order-42 retry".into())
        );
        let longest = "k".repeat(MAX_KEY_LEN);
        assert_eq!(
            header_key(&headers(&[longest.as_bytes()])).unwrap(),
            Some(longest.clone())
        );
        for bad in [
            &b""[..],
            b"   ",
            b" padded",
            "k".repeat(MAX_KEY_LEN + 1).as_bytes(),
            "caf\u{e9}".as_bytes(),
            b"tab\there",
        ] {
            let e = header_key(&headers(&[bad])).unwrap_err();
            assert_eq!(e.code(), "invalid_idempotency_key", "{bad:?}");
            assert_eq!(e.status(), salvo::http::StatusCode::BAD_REQUEST);
        }
        let e = header_key(&headers(&[b"a", b"b"])).unwrap_err();
        assert_eq!(e.code(), "invalid_idempotency_key");
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let scope = || IdempotencyScope::Address("127.0.0.1".into());
        let hash = |f: Fingerprint| f.key("k".into(), scope(), DEFAULT_KEEP).request_hash;
        let a = hash(Fingerprint::new("enqueue").part(b"ab").part(b"c"));
        assert_eq!(a, hash(Fingerprint::new("enqueue").part(b"ab").part(b"c")));
        assert_ne!(a, hash(Fingerprint::new("enqueue").part(b"a").part(b"bc")));
        assert_ne!(a, hash(Fingerprint::new("upload").part(b"ab").part(b"c")));
        assert_ne!(
            hash(Fingerprint::new("enqueue").optional(None)),
            hash(Fingerprint::new("enqueue").optional(Some("")))
        );
    }
}
