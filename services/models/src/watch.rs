//! What a running service needs to follow the models directory: a cheap fingerprint of
//! its files, to notice a change without hashing every ONNX file, and a registry shared by
//! readers that a reload replaces whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::registry::Registry;

/// Every file one level below the models directory's subdirectories (the manifests and
/// ONNX files), with its size and modification time, sorted by path. Two equal
/// fingerprints mean nothing was added, removed, replaced or rewritten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl Fingerprint {
    /// Reads the directory. Entries that vanish while it is read are left out.
    pub fn of(dir: &Path) -> std::io::Result<Self> {
        let mut files = Vec::new();
        for model_dir in std::fs::read_dir(dir)? {
            let model_dir = model_dir?.path();
            let Ok(entries) = std::fs::read_dir(&model_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_file() {
                    files.push((entry.path(), meta.len(), meta.modified().ok()));
                }
            }
        }
        files.sort();
        Ok(Fingerprint(files))
    }
}

/// The registry a service answers from, replaced whole when the models directory
/// changes: a reader takes the current one and keeps it for the request.
#[derive(Debug)]
pub struct SharedRegistry(RwLock<Arc<Registry>>);

impl SharedRegistry {
    pub fn new(registry: Registry) -> Self {
        SharedRegistry(RwLock::new(Arc::new(registry)))
    }

    /// The registry as it is now.
    pub fn current(&self) -> Arc<Registry> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `registry` in place; readers that took the old one keep it.
    pub fn replace(&self, registry: Registry) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
    }
}
