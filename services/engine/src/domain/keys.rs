//! API keys: their ids and the scopes that say what a key may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An API key's id (not the token; the token is never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ApiKeyId(Uuid);

impl ApiKeyId {
    pub fn new() -> Self {
        ApiKeyId(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        ApiKeyId(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for ApiKeyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a key may do (Postgres type `api_key_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "api_key_scope", rename_all = "lowercase")]
pub enum Scope {
    /// Everything operators use: event logs, deliveries, redelivery, and later routes.
    Operator,
    /// Submitting jobs on the `/v2` routes when keys are required there.
    Submit,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Operator => "operator",
            Scope::Submit => "submit",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "operator" => Ok(Scope::Operator),
            "submit" => Ok(Scope::Submit),
            other => Err(format!("unknown scope {other:?}; use operator or submit")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        for scope in [Scope::Operator, Scope::Submit] {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("admin".parse::<Scope>().is_err());
    }
}
