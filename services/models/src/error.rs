//! Errors raised while loading manifests and resolving model ids.

use std::path::PathBuf;

/// A manifest that could not be read, parsed, or that failed validation.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model manifest {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid model manifest {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// A registry directory that could not be loaded as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read models directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("no models in {path}: expected at least one <name>/model.toml")]
    Empty { path: PathBuf },
    #[error("model id {id:?} is declared by both {first} and {second}")]
    DuplicateId {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("default model {0}")]
    UnknownDefault(#[source] UnknownModel),
}

/// A requested model id that matches no model name or alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model_id {requested:?}; known ids: {}", known.join(", "))]
pub struct UnknownModel {
    pub requested: String,
    pub known: Vec<String>,
}
