//! Loading every manifest under a directory and resolving model ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{ManifestError, RegistryError, UnknownModel};
use crate::manifest::{Category, Manifest};

/// A validated model: its manifest plus where its files are.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    manifest: Manifest,
    manifest_path: PathBuf,
    onnx_path: PathBuf,
    /// SHA-256 of the ONNX file, lowercase hex.
    version: String,
}

/// Hex digits of a version shown to people (the console, logs, the import command).
pub const SHORT_VERSION_LEN: usize = 12;

impl Model {
    /// Loads `<dir>/model.toml`, validates it and checks that its ONNX file exists.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let manifest_path = absolute(&dir.join("model.toml"));
        let manifest = Manifest::from_file(&manifest_path)?;
        let base = manifest_path.parent().unwrap_or(Path::new("/"));
        let onnx_path = base.join(&manifest.file);
        if !onnx_path.is_file() {
            return Err(ManifestError::Invalid {
                path: manifest_path,
                problem: format!("model file {} does not exist", onnx_path.display()),
            });
        }
        let version = file_sha256(&onnx_path).map_err(|source| ManifestError::Read {
            path: onnx_path.clone(),
            source,
        })?;
        Ok(Self {
            manifest,
            manifest_path,
            onnx_path,
            version,
        })
    }

    /// The model's version: the SHA-256 of its ONNX file (64 lowercase hex digits). Two
    /// models with the same weights file have the same version, whatever their manifests.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The first [`SHORT_VERSION_LEN`] hex digits of the version, as people see it.
    pub fn short_version(&self) -> &str {
        short_version(&self.version)
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The id reported as `model_identifier`: the first alias, or the name without aliases.
    pub fn primary_id(&self) -> &str {
        self.manifest
            .aliases
            .first()
            .map_or(self.manifest.name.as_str(), String::as_str)
    }

    /// All ids this model answers to (name first, then aliases).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.manifest.ids()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Absolute path of the manifest file.
    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// Absolute path of the ONNX file.
    pub fn onnx_path(&self) -> &Path {
        &self.onnx_path
    }

    pub fn categories(&self) -> &[Category] {
        &self.manifest.categories
    }

    /// The category for a model class index.
    pub fn category(&self, index: usize) -> Option<&Category> {
        self.manifest.categories.get(index)
    }
}

/// Every model under the models directory, keyed by name and alias.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Sorted by name.
    models: Vec<Model>,
    by_id: HashMap<String, usize>,
    default: usize,
}

impl Registry {
    /// Loads every `<dir>/*/model.toml`. Subdirectories without a manifest are ignored.
    /// The default model is the first by name until [`Registry::with_default`] says otherwise.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let dir = absolute(dir.as_ref());
        let read_err = |source| RegistryError::ReadDir {
            path: dir.clone(),
            source,
        };
        let mut models = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let path = entry.path();
            if path.is_dir() && path.join("model.toml").is_file() {
                models.push(Model::load(&path)?);
            }
        }
        if models.is_empty() {
            return Err(RegistryError::Empty { path: dir });
        }
        Self::from_models(models)
    }

    /// Builds a registry from already loaded models, checking that ids are unique.
    pub fn from_models(mut models: Vec<Model>) -> Result<Self, RegistryError> {
        models.sort_by(|a, b| a.name().cmp(b.name()));
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (index, model) in models.iter().enumerate() {
            for id in model.ids() {
                if let Some(&other) = by_id.get(id) {
                    return Err(RegistryError::DuplicateId {
                        id: id.to_owned(),
                        first: models[other].manifest_path.clone(),
                        second: model.manifest_path.clone(),
                    });
                }
                by_id.insert(id.to_owned(), index);
            }
        }
        if models.is_empty() {
            return Err(RegistryError::Empty {
                path: PathBuf::new(),
            });
        }
        Ok(Self {
            models,
            by_id,
            default: 0,
        })
    }

    /// Sets the model used when a request names none (`FOODSEG_DEFAULT_MODEL`);
    /// `None` keeps the first model by name.
    pub fn with_default(mut self, default: Option<String>) -> Result<Self, RegistryError> {
        if let Some(id) = default {
            let index = self
                .index_of(&id)
                .ok_or_else(|| RegistryError::UnknownDefault(self.unknown(&id)))?;
            self.default = index;
        }
        Ok(self)
    }

    /// Resolves a request's `model_id`; `None` gives the default model.
    pub fn resolve(&self, model_id: Option<&str>) -> Result<&Model, UnknownModel> {
        match model_id {
            None => Ok(self.default_model()),
            Some(id) => self.get(id).ok_or_else(|| self.unknown(id)),
        }
    }

    /// The model with this name or alias.
    pub fn get(&self, id: &str) -> Option<&Model> {
        self.index_of(id).map(|i| &self.models[i])
    }

    pub fn default_model(&self) -> &Model {
        &self.models[self.default]
    }

    /// Models sorted by name.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// Every accepted id (names and aliases), sorted.
    pub fn known_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.by_id.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id.trim()).copied()
    }

    fn unknown(&self, id: &str) -> UnknownModel {
        UnknownModel {
            requested: id.to_owned(),
            known: self.known_ids(),
        }
    }
}

/// The first [`SHORT_VERSION_LEN`] characters of a version (all of a shorter one).
pub fn short_version(version: &str) -> &str {
    version.get(..SHORT_VERSION_LEN).unwrap_or(version)
}

/// SHA-256 of a file's bytes, lowercase hex, read in chunks.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
