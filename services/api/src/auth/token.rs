//! API key tokens: 32 random bytes, base64url, with a prefix that makes a leaked token
//! easy to recognise (secret scanners, logs). Only the SHA-256 of a token is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "fsk_";

/// A new token and its hash.
pub fn generate_token() -> (String, [u8; 32]) {
    let secret: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_token(&token);
    (token, hash)
}

/// Characters of a token after its prefix: 32 bytes in unpadded base64url.
const TOKEN_BODY_LEN: usize = 43;

/// Whether `token` has the form of a token this api issues (`fsk_` and 43 base64url
/// characters). Anything else is refused without a database lookup.
pub fn is_token_shaped(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|body| {
        body.len() == TOKEN_BODY_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The SHA-256 of a token, as stored. Tokens carry 256 random bits, so a plain hash is
/// enough: there is nothing to brute-force.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, hash_a) = generate_token();
        let (b, _) = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a), hash_a);
        assert_ne!(hash_token(&b), hash_a);
        assert!(is_token_shaped(&a) && is_token_shaped(&b));
    }

    #[test]
    fn only_tokens_of_the_issued_form_are_looked_up() {
        let (token, _) = generate_token();
        for bad in [
            "",
            "fsk_",
            "Bearer fsk_x",
            &token[1..],
            &format!("{token}x"),
            &format!("fsk_{}", "!".repeat(43)),
            &format!("xyz_{}", &token[4..]),
        ] {
            assert!(!is_token_shaped(bad), "{bad:?}");
        }
    }
}
