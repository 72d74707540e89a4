//! Model directories for tests.

use std::path::{Path, PathBuf};

/// The repository's `models/` directory.
pub fn repo_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// A unique temporary models directory, removed on drop. Each model gets the manifest
/// of the repository's first model with its own name and aliases, and an empty ONNX file
/// (enough for the registry; not for inference).
#[derive(Debug)]
pub struct TestModels {
    pub dir: PathBuf,
}

impl TestModels {
    /// `models`: (name, aliases) pairs.
    pub fn new(models: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        let template = first_manifest()?;
        let dir =
            std::env::temp_dir().join(format!("foodseg-models-{}", uuid::Uuid::new_v4().simple()));
        for (name, aliases) in models {
            let model_dir = dir.join(name);
            std::fs::create_dir_all(&model_dir)?;
            let aliases: Vec<String> = aliases.iter().map(|a| format!("{a:?}")).collect();
            let manifest: String = template
                .lines()
                .map(|line| {
                    if line.starts_with("name =") {
                        format!("name = {name:?}")
                    } else if line.starts_with("aliases =") {
                        format!("aliases = [{}]", aliases.join(", "))
                    } else if line.starts_with("file =") {
                        "file = \"model.onnx\"".to_string()
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(model_dir.join("model.toml"), manifest)?;
            std::fs::write(model_dir.join("model.onnx"), b"")?;
        }
        Ok(TestModels { dir })
    }
}

impl Drop for TestModels {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn first_manifest() -> anyhow::Result<String> {
    let root = repo_models_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.toml").is_file())
        .collect();
    dirs.sort();
    let first = dirs
        .first()
        .ok_or_else(|| anyhow::anyhow!("no model manifest under {}", root.display()))?;
    Ok(std::fs::read_to_string(first.join("model.toml"))?)
}
