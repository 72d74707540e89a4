//! API keys: created with the SHA-256 of their token (the token itself is never stored),
//! found by that hash, listed, revoked by name.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};
use crate::domain::{ApiKeyId, Scope};

/// A row of `api_keys`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// SHA-256 of the token.
    #[serde(skip)]
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    #[error("a live key named {0:?} exists; revoke it first")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Stores a new key. Fails with [`CreateKeyError::NameTaken`] while a live key has
    /// the same name.
    pub async fn create_api_key(
        &self,
        name: &str,
        scopes: &[Scope],
        token_hash: &[u8; 32],
    ) -> Result<ApiKeyRow, CreateKeyError> {
        let created = sqlx::query_as!(
            ApiKeyRow,
            r#"INSERT INTO api_keys (id, name, scopes, token_hash) VALUES ($1, $2, $3, $4)
               ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
               RETURNING id AS "id: ApiKeyId", name, scopes AS "scopes: Vec<Scope>",
                         token_hash, created_at, last_used_at, revoked_at"#,
            ApiKeyId::new() as ApiKeyId,
            name,
            scopes as &[Scope],
            token_hash.as_slice(),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from)?;
        created.ok_or_else(|| CreateKeyError::NameTaken(name.to_string()))
    }

    /// The live (not revoked) key whose token has this hash.
    pub async fn live_api_key(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        let key = sqlx::query_as!(
            ApiKeyRow,
            r#"SELECT id AS "id: ApiKeyId", name, scopes AS "scopes: Vec<Scope>", token_hash,
                      created_at, last_used_at, revoked_at
               FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL"#,
            token_hash.as_slice(),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(key)
    }

    /// The id of the live key named `name`, if there is one.
    pub async fn live_api_key_id(&self, name: &str) -> Result<Option<ApiKeyId>, StoreError> {
        let id = sqlx::query_scalar!(
            r#"SELECT id AS "id: ApiKeyId" FROM api_keys WHERE name = $1 AND revoked_at IS NULL"#,
            name,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// Every key, live and revoked, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let keys = sqlx::query_as!(
            ApiKeyRow,
            r#"SELECT id AS "id: ApiKeyId", name, scopes AS "scopes: Vec<Scope>", token_hash,
                      created_at, last_used_at, revoked_at
               FROM api_keys ORDER BY created_at, id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(keys)
    }

    /// Revokes the live key named `name`; `false` when there is none.
    pub async fn revoke_api_key(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            r#"UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"#,
            name
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Notes that the key was used now.
    pub async fn touch_api_key(&self, id: ApiKeyId) -> Result<(), StoreError> {
        sqlx::query!(
            r#"UPDATE api_keys SET last_used_at = now() WHERE id = $1"#,
            id as ApiKeyId
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
