//! `foodseg-api keys create|list|revoke`: managing API keys from the api's own binary,
//! against the database of `DATABASE_URL`. `create` prints the token — and only the
//! token — on stdout, once; everything else goes to stderr.

use std::io::Write;

use chrono::{DateTime, Utc};
use foodseg_engine::store::CreateKeyError;
use foodseg_engine::{Scope, Store};

use crate::auth::generate_token;
use crate::config::Config;
use crate::error::Error;

/// What to do with keys.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its token (shown this once).
    Create {
        /// A name to list and revoke the key by (one live key per name).
        #[arg(long)]
        name: String,
        /// What the key may do: `operator` or `submit` (repeat for both).
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
    /// List every key (live and revoked); tokens are never shown.
    List,
    /// Revoke the live key with this name.
    Revoke {
        /// The key's name.
        name: String,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

/// Why a keys command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Service(#[from] Error),
    #[error(transparent)]
    Create(#[from] CreateKeyError),
    #[error("no live key is named {0:?}")]
    NoSuchKey(String),
    #[error("a key name must be 1 to 100 printable characters, got {0:?}")]
    BadName(String),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

impl From<foodseg_engine::StoreError> for KeysError {
    fn from(e: foodseg_engine::StoreError) -> Self {
        KeysError::Service(Error::Store(e))
    }
}

/// Runs one keys command, writing its result to `out` (stdout in the binary).
pub async fn run(
    config: &Config,
    command: KeysCommand,
    out: &mut impl Write,
) -> Result<(), KeysError> {
    let common = &config.common;
    let store = Store::connect_lazy(&common.store_config(), common.subjects.clone())
        .map_err(Error::Store)?;
    store.migrate().await.map_err(Error::Store)?;
    match command {
        KeysCommand::Create { name, mut scopes } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(KeysError::BadName(name));
            }
            scopes.sort_by_key(|s| s.as_str());
            scopes.dedup();
            let (token, hash) = generate_token();
            let key = store.create_api_key(&name, &scopes, &hash).await?;
            writeln!(out, "{token}")?;
            let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
            eprintln!(
                "created key {:?} with scope {}; the token above is shown only this once",
                key.name,
                scopes.join(", ")
            );
        }
        KeysCommand::List => {
            writeln!(
                out,
                "{:<24} {:<16} {:<20} {:<20} revoked",
                "name", "scopes", "created", "last used"
            )?;
            for key in store.api_keys().await? {
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                writeln!(
                    out,
                    "{:<24} {:<16} {:<20} {:<20} {}",
                    key.name,
                    scopes.join(","),
                    time(Some(key.created_at)),
                    time(key.last_used_at),
                    time(key.revoked_at),
                )?;
            }
        }
        KeysCommand::Revoke { name } => {
            if !store.revoke_api_key(name.trim()).await? {
                return Err(KeysError::NoSuchKey(name));
            }
            eprintln!("revoked key {name:?}");
        }
    }
    Ok(())
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}
