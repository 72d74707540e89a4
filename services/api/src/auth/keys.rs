//! Checking presented tokens against the stored keys, with a short cache so a busy
//! client costs one database lookup per few seconds, not one per request. Revocation
//! takes effect within the cache's time to live. Live keys and unknown tokens are cached
//! apart: the live ones are few, and a flood of made-up tokens only turns over the
//! bounded, least-recently-used cache of unknown ones, never evicting a valid key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foodseg_engine::store::ApiKeyRow;
use foodseg_engine::{ApiKeyId, Scope, Store, StoreError};
use subtle::ConstantTimeEq;

use super::token::{hash_token, is_token_shaped};

/// How long a lookup (found or not) is reused.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// At most this many unknown tokens are remembered (least recently used go first).
const UNKNOWN_MAX: usize = 10_000;
/// At most this many live keys are cached; past it, expired entries are dropped.
const LIVE_MAX: usize = 10_000;
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

/// The keys the api accepts. Shared behind an `Arc` in the api's state.
pub struct KeyRing {
    store: Store,
    /// Live keys by token hash, with when they were looked up.
    live: Mutex<HashMap<[u8; 32], (AuthKey, Instant)>>,
    /// Token hashes no live key has, with when they were looked up.
    unknown: Mutex<hashlink::LruCache<[u8; 32], Instant>>,
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
            live: Mutex::new(HashMap::new()),
            unknown: Mutex::new(hashlink::LruCache::new(UNKNOWN_MAX)),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// The live key whose token is `token`, if any.
    /// A token not of the issued form is refused without a lookup.
    pub async fn authenticate(&self, token: &str) -> Result<Option<AuthKey>, StoreError> {
        if !is_token_shaped(token) {
            return Ok(None);
        }
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
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((key, at)) = live.get(hash)
            && at.elapsed() < CACHE_TTL
        {
            return Some(Some(key.clone()));
        }
        drop(live);
        let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        match unknown.get(hash) {
            Some(at) if at.elapsed() < CACHE_TTL => Some(None),
            _ => None,
        }
    }

    fn remember(&self, hash: [u8; 32], key: Option<AuthKey>) {
        let now = Instant::now();
        match key {
            Some(key) => {
                let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                if live.len() >= LIVE_MAX {
                    live.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                }
                live.insert(hash, (key, now));
            }
            None => {
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&hash);
                self.unknown
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hash, now);
            }
        }
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
