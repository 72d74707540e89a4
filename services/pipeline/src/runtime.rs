//! Loading the ONNX Runtime shared library (`ORT_DYLIB_PATH`) once per process.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

/// The environment variable naming the ONNX Runtime library.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// Why ONNX Runtime could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ORT_DYLIB_PATH is not set: point it at the ONNX Runtime library \
         (libonnxruntime.so.1.31.x; `scripts/fetch-onnxruntime.sh` prints its path)"
    )]
    DylibPathUnset,
    #[error("ONNX Runtime library {} (ORT_DYLIB_PATH) does not exist", .0.display())]
    DylibMissing(PathBuf),
    #[error("cannot load ONNX Runtime from {}: {source}", path.display())]
    DylibLoad {
        path: PathBuf,
        #[source]
        source: ort::LoadDynamicError,
    },
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(#[source] ort::Error),
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// The path from `ORT_DYLIB_PATH`.
pub fn dylib_path_from_env() -> Result<PathBuf, RuntimeError> {
    match std::env::var_os(ORT_DYLIB_PATH) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(RuntimeError::DylibPathUnset),
    }
}

/// Loads ONNX Runtime from `dylib` (or `ORT_DYLIB_PATH` when `None`) and creates the
/// process-wide environment. Later calls return the same environment; a process can
/// load only one ONNX Runtime library.
pub fn environment(dylib: Option<&Path>) -> Result<Environment, RuntimeError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env.clone());
    }
    let path = match dylib {
        Some(path) => path.to_owned(),
        None => dylib_path_from_env()?,
    };
    if !path.is_file() {
        return Err(RuntimeError::DylibMissing(path));
    }
    let builder = ort::init_from(&path).map_err(|source| RuntimeError::DylibLoad {
        path: path.clone(),
        source,
    })?;
    let env = builder
        .with_name("foodseg")
        .build()
        .map_err(RuntimeError::Environment)?;
    tracing::info!(path = %path.display(), "loaded ONNX Runtime");
    Ok(ENVIRONMENT.get_or_init(|| env).clone())
}
