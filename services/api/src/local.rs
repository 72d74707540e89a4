//! The api in-process on a loopback port, as tests (and anything embedding the api) run
//! it: [`api_parts`] for a given pool, subjects and models, [`start_api_with`] to serve
//! them on `127.0.0.1:0`, and [`api_key`] to make a key.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use foodseg_engine::netguard::NetPolicy;
use foodseg_engine::{Bus, RelayConfig, Scope, Store, Subjects};
use foodseg_models::Registry;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Parts;

/// A running api. Dropping it stops the server; [`LocalApi::stop`] also waits for it.
#[derive(Debug)]
pub struct LocalApi {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    pub addr: SocketAddr,
    /// The store the api writes to (same pool).
    pub store: Store,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), crate::Error>>>,
}

impl LocalApi {
    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Stops the server gracefully and returns how it ended.
    pub async fn stop(mut self) -> Result<(), crate::Error> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| crate::Error::Serve(std::io::Error::other(e)))?,
            None => Ok(()),
        }
    }
}

impl Drop for LocalApi {
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
) -> Result<Parts, crate::Error> {
    let store = Store::from_pool(pool, subjects.clone());
    let bus = Bus::connect(nats_url, subjects).await?;
    Ok(Parts {
        store,
        bus,
        registry: Registry::load(models_dir)?,
        max_attempts: crate::config::DEFAULT_MAX_ATTEMPTS,
        net_policy: NetPolicy {
            allow: vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                IpNet::V6(Ipv6Net::from(Ipv6Addr::LOCALHOST)),
            ],
        },
        relay: RelayConfig::default(),
        uploads: crate::upload::UploadLimits::default(),
        access: crate::auth::AccessConfig::default(),
        limits: crate::limits::LimitSettings::default(),
        idempotency_keep: crate::idempotency::DEFAULT_KEEP,
        models_watch: None,
    })
}

/// A new live API key with `scopes` in `store`; returns its token.
pub async fn api_key(
    store: &Store,
    name: &str,
    scopes: &[Scope],
) -> Result<String, foodseg_engine::store::CreateKeyError> {
    let (token, hash) = crate::auth::generate_token();
    store.create_api_key(name, scopes, &hash).await?;
    Ok(token)
}

/// Starts the api on `127.0.0.1:0` with the repository's models (`models/` of this
/// checkout) and returns once it accepts connections.
pub async fn start_api(
    pool: PgPool,
    subjects: Subjects,
    nats_url: &str,
) -> Result<LocalApi, crate::Error> {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let parts = api_parts(pool, subjects, nats_url, &models).await?;
    start_api_with(parts).await
}

/// Starts the api from ready-made parts on `127.0.0.1:0`.
pub async fn start_api_with(parts: Parts) -> Result<LocalApi, crate::Error> {
    let bind = |source| crate::Error::Bind {
        addr: "127.0.0.1:0".into(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let store = parts.store.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(crate::serve(parts, listener, shutdown.clone()));
    Ok(LocalApi {
        base_url: format!("http://{addr}"),
        addr,
        store,
        shutdown,
        task: Some(task),
    })
}
