//! The api running in-process on a loopback port.

use std::net::SocketAddr;
use std::path::Path;

use foodseg_api::Parts;
use foodseg_engine::netguard::NetPolicy;
use foodseg_engine::{Bus, RelayConfig, Scope, Store, Subjects};
use foodseg_models::Registry;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running api. Dropping it stops the server; [`TestApi::stop`] also waits for it.
#[derive(Debug)]
pub struct TestApi {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    pub addr: SocketAddr,
    /// The store the api writes to (same pool).
    pub store: Store,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), foodseg_api::Error>>>,
}

impl TestApi {
    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Stops the server gracefully and returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Parts for an api on `pool` (e.g. a `#[sqlx::test]` database) and `subjects`, with the
/// models in `models_dir`, NATS at `nats_url`, and loopback URLs allowed.
pub async fn api_parts(
    pool: PgPool,
    subjects: Subjects,
    nats_url: &str,
    models_dir: &Path,
) -> anyhow::Result<Parts> {
    let store = Store::from_pool(pool, subjects.clone());
    let bus = Bus::connect(nats_url, subjects).await?;
    Ok(Parts {
        store,
        bus,
        registry: Registry::load(models_dir)?,
        max_attempts: foodseg_api::config::DEFAULT_MAX_ATTEMPTS,
        net_policy: NetPolicy::parse_allow_list("127.0.0.0/8,::1/128")?,
        relay: RelayConfig::default(),
        uploads: foodseg_api::upload::UploadLimits::default(),
        access: foodseg_api::auth::AccessConfig::default(),
        limits: foodseg_api::limits::LimitSettings::default(),
        idempotency_keep: foodseg_api::idempotency::DEFAULT_KEEP,
    })
}

/// A new live API key with `scopes` in `store`; returns its token.
pub async fn api_key(store: &Store, name: &str, scopes: &[Scope]) -> anyhow::Result<String> {
    let (token, hash) = foodseg_api::auth::generate_token();
    store.create_api_key(name, scopes, &hash).await?;
    Ok(token)
}

/// Starts the api on `127.0.0.1:0` with the repository's models and returns once it
/// accepts connections.
pub async fn start_api(
    pool: PgPool,
    subjects: Subjects,
    nats_url: &str,
) -> anyhow::Result<TestApi> {
    let parts = api_parts(pool, subjects, nats_url, &crate::repo_models_dir()).await?;
    start_api_with(parts).await
}

/// Starts the api from ready-made parts on `127.0.0.1:0`.
pub async fn start_api_with(parts: Parts) -> anyhow::Result<TestApi> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let store = parts.store.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(foodseg_api::serve(parts, listener, shutdown.clone()));
    Ok(TestApi {
        base_url: format!("http://{addr}"),
        addr,
        store,
        shutdown,
        task: Some(task),
    })
}
