//! Standard Webhooks signing: `webhook-signature: v1,<base64(HMAC-SHA256(key,
//! "{webhook-id}.{webhook-timestamp}.{body}"))>`, the key being the base64 after the
//! `whsec_` prefix of a secret of `FOODSEG_WEBHOOK_SECRET`.
//!
//! The variable takes several secrets separated by spaces (`whsec_new whsec_old`), and
//! each delivery carries one `v1,` signature per secret, space-separated as the standard
//! allows: a receiver that holds any one of them verifies it. That is how a secret is
//! rotated without a window in which the receiver rejects webhooks — add the new secret
//! beside the old, let the receiver switch, then drop the old one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret is not `whsec_<base64>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no secret given")]
    None,
    #[error("secret {position} of the list: {reason}")]
    InList {
        position: usize,
        #[source]
        reason: Box<SecretError>,
    },
    #[error("must start with {SECRET_PREFIX:?}")]
    Prefix,
    #[error("the part after {SECRET_PREFIX:?} is not valid base64")]
    Base64(#[source] base64::DecodeError),
    #[error("the key is empty")]
    Empty,
}

/// A decoded signing key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, SecretError> {
        let encoded = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(SecretError::Base64)?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(WebhookSecret { key })
    }
}

/// The signing secrets of `FOODSEG_WEBHOOK_SECRET`, newest first. Their `Debug` never
/// shows a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl std::str::FromStr for WebhookSecrets {
    type Err = SecretError;

    /// One or more secrets separated by spaces.
    fn from_str(s: &str) -> Result<Self, SecretError> {
        let secrets = s
            .split_whitespace()
            .enumerate()
            .map(|(i, secret)| {
                secret
                    .parse::<WebhookSecret>()
                    .map_err(|e| SecretError::InList {
                        position: i + 1,
                        reason: Box::new(e),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(SecretError::None);
        }
        Ok(WebhookSecrets(secrets))
    }
}

impl WebhookSecrets {
    /// The `webhook-signature` header value for one attempt: one `v1,` signature per
    /// secret, separated by spaces.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &str) -> String {
        self.0
            .iter()
            .map(|secret| secret.sign(webhook_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl WebhookSecret {
    /// The `v1,` signature of one attempt under this secret.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks reference libraries' test suite.
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!("abc".parse::<WebhookSecret>(), Err(SecretError::Prefix));
        assert!(matches!(
            "whsec_!!!".parse::<WebhookSecret>(),
            Err(SecretError::Base64(_))
        ));
        assert_eq!("whsec_".parse::<WebhookSecret>(), Err(SecretError::Empty));
        let debug = format!("{:?}", "whsec_c2VjcmV0".parse::<WebhookSecret>().unwrap());
        assert!(!debug.contains("c2VjcmV0"));
        assert_eq!("  ".parse::<WebhookSecrets>(), Err(SecretError::None));
        let e = "whsec_c2VjcmV0 nope".parse::<WebhookSecrets>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret 2 of the list: must start with \"whsec_\""
        );
        let debug = format!(
            "{:?}",
            "whsec_c2VjcmV0 whsec_b3RoZXI=".parse::<WebhookSecrets>()
        );
        assert!(
            !debug.contains("c2VjcmV0") && !debug.contains("b3RoZXI"),
            "{debug}"
        );
    }

    #[test]
    fn several_secrets_give_one_signature_each_in_order() {
        let new: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let old: WebhookSecret = "whsec_c2VjcmV0".parse().unwrap();
        let both: WebhookSecrets = " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw   whsec_c2VjcmV0 "
            .parse()
            .unwrap();
        let (id, ts, body) = ("msg_1", 1614265330, "\"{}\"");
        assert_eq!(
            both.sign(id, ts, body),
            format!("{} {}", new.sign(id, ts, body), old.sign(id, ts, body))
        );
        let one: WebhookSecrets = "whsec_c2VjcmV0".parse().unwrap();
        assert_eq!(one.sign(id, ts, body), old.sign(id, ts, body));
    }
}
