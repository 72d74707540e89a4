//! Who owns a new job: the API key that created it, or — for the keyless MFR v1 routes —
//! the key `FOODSEG_V1_OWNER` names, looked up by name and remembered for a few seconds
//! (a key created, revoked or replaced under that name is seen within that time).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use foodseg_engine::{ApiKeyId, Store, StoreError};

use super::guard::Caller;

/// How long a lookup of the v1 owner's key is reused.
const OWNER_TTL: Duration = Duration::from_secs(5);

/// The owner of keyless v1 jobs. Shared behind an `Arc` in the api's state.
#[derive(Debug)]
pub struct V1Owner {
    name: Option<String>,
    cached: Mutex<Option<(Option<ApiKeyId>, Instant)>>,
}

impl V1Owner {
    /// The owner named by `FOODSEG_V1_OWNER` (`None`: keyless jobs have no owner).
    pub fn new(name: Option<String>) -> Self {
        V1Owner {
            name,
            cached: Mutex::new(None),
        }
    }

    /// The id of the live key the setting names; `None` when none is named, or no live
    /// key has that name (then the jobs have no owner, and a warning says why).
    pub async fn id(&self, store: &Store) -> Result<Option<ApiKeyId>, StoreError> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        if let Some((id, at)) = *self.cached.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < OWNER_TTL
        {
            return Ok(id);
        }
        let id = store.live_api_key_id(name).await?;
        if id.is_none() {
            tracing::warn!(
                key = %name,
                "FOODSEG_V1_OWNER names no live API key; keyless v1 jobs get no owner until one is created"
            );
        }
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, Instant::now()));
        Ok(id)
    }

    /// The owner of a job `caller` creates: its key, else the v1 owner.
    pub async fn of(
        &self,
        caller: Option<&Caller>,
        store: &Store,
    ) -> Result<Option<ApiKeyId>, StoreError> {
        match caller {
            Some(Caller::Key(key)) => Ok(Some(key.id)),
            _ => self.id(store).await,
        }
    }
}
