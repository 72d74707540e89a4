//! Checking presented tokens against the stored keys, with a short cache so a busy
//! client costs one database lookup per few seconds, not one per request. Revocation
//! takes effect within the cache's time to live.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foodseg_engine::store::ApiKeyRow;
use foodseg_engine::{ApiKeyId, Scope, Store, StoreError};
use subtle::ConstantTimeEq;

use super::token::hash_token;

/// How long a lookup (found or not) is reused.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// At most this many cached lookups; a flood of made-up tokens empties the cache
/// rather than growing it.
const CACHE_MAX: usize = 10_000;
/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A live key that presented its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKey {
    pub id: ApiKeyId,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl AuthKey {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

struct Cached {
    key: Option<AuthKey>,
    at: Instant,
}

/// The keys the api accepts. Shared behind an `Arc` in the api's state.
pub struct KeyRing {
    store: Store,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    touched: Mutex<HashMap<ApiKeyId, Instant>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

impl KeyRing {
    pub fn new(store: Store) -> Self {
        KeyRing {
            store,
            cache: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// The live key whose token is `token`, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<AuthKey>, StoreError> {
        let hash = hash_token(token);
        if let Some(key) = self.cached(&hash) {
            return Ok(key);
        }
        let row = self.store.live_api_key(&hash).await?;
        let key = row.filter(|row| matches(row, &hash)).map(|row| AuthKey {
            id: row.id,
            name: row.name,
            scopes: row.scopes,
        });
        self.remember(hash, key.clone());
        if let Some(key) = &key {
            self.touch(key.id);
        }
        Ok(key)
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Option<AuthKey>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|c| c.at.elapsed() < CACHE_TTL)
            .map(|c| c.key.clone())
    }

    fn remember(&self, hash: [u8; 32], key: Option<AuthKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            hash,
            Cached {
                key,
                at: Instant::now(),
            },
        );
    }

    /// Records the use in the background, at most once a minute per key.
    fn touch(&self, id: ApiKeyId) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(&id)
                .is_some_and(|at| at.elapsed() < TOUCH_EVERY)
            {
                return;
            }
            touched.insert(id, Instant::now());
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(id).await {
                tracing::debug!(error = %foodseg_engine::error_chain(&e), "cannot note a key's last use");
            }
        });
    }
}

/// The stored hash equals the presented one, compared in constant time.
fn matches(row: &ApiKeyRow, hash: &[u8; 32]) -> bool {
    row.token_hash.as_slice().ct_eq(hash.as_slice()).into()
}
