//! `foodseg-worker models import FILE.onnx --name NAME`: puts an exported YOLO
//! segmentation model (Ultralytics YOLOv8/YOLO11-seg, or YOLOv5-seg) into the models
//! directory with a `model.toml` written for it, so no manifest is written by hand.
//!
//! The file is inspected with ONNX Runtime ([`foodseg_pipeline::inspect`]), recognised
//! ([`foodseg_models::import::recognise`]: layout, input, class names, category ids),
//! copied with its manifest into a staging directory inside the models directory, loaded
//! and run there once as the worker would serve it, and only then moved into place by
//! renames, so that nothing reading the models directory sees a half-written model.
//! What cannot be recognised is refused with a message saying what was found; such a
//! model's manifest is written by hand (docs/models.md).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use foodseg_models::import::{self, ImportRequest, Provenance, Recognised, Unrecognised};
use foodseg_models::{Manifest, Model, short_version};
use foodseg_pipeline::SessionOptions;
use foodseg_pipeline::inspect::{InspectError, TrialError};

/// The first command-line argument that selects this command instead of the service.
pub const COMMAND: &str = "models";

/// Whether the command line (program name first) is `models ...`.
pub fn is_models_command(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == COMMAND)
}

#[derive(Debug, Parser)]
#[command(
    name = "foodseg-worker models",
    bin_name = "foodseg-worker models",
    version,
    about = "Manages the models directory the api and the workers serve from.",
    after_help = "docs/models.md describes the manifest (model.toml) and how to bring your own model."
)]
struct ModelsCli {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Imports an exported ONNX segmentation model (Ultralytics `yolo export
    /// format=onnx` of a -seg model, or a YOLOv5-seg export): recognises its layout, input
    /// size and class names, and writes DIR/NAME/model.onnx and DIR/NAME/model.toml.
    Import(ImportArgs),
}

/// The arguments of `models import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The exported ONNX file.
    pub file: PathBuf,
    /// The model's name: its directory under the models directory and a `model_id`.
    #[arg(long)]
    pub name: String,
    /// Other `model_id` values the model answers to, comma-separated; the first is its
    /// primary id.
    #[arg(long, value_delimiter = ',')]
    pub aliases: Vec<String>,
    /// The models directory.
    #[arg(long, env = "FOODSEG_MODELS_DIR", default_value = foodseg_runtime::config::DEFAULT_MODELS_DIR)]
    pub models_dir: PathBuf,
    /// Replace a model of that name already in the models directory.
    #[arg(long)]
    pub replace: bool,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "invalid model name {0:?}: it names a directory under the models directory (no \
         path separators, not starting with a dot)"
    )]
    BadName(String),
    #[error("{} is not a file", .0.display())]
    NotAFile(PathBuf),
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("{}: {source}", file.display())]
    Unrecognised {
        file: PathBuf,
        #[source]
        source: Unrecognised,
    },
    #[error(
        "a model named {name:?} already exists in {}; pass --replace to replace it",
        dir.display()
    )]
    Exists { name: String, dir: PathBuf },
    #[error("model id {id:?} is already used by {}", manifest.display())]
    IdTaken { id: String, manifest: PathBuf },
    #[error("the imported model does not load or run as the worker would serve it: {0}")]
    Trial(#[source] TrialError),
    #[error("the written manifest does not read back as built: {0}")]
    Manifest(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImportError {
    let path = path.to_owned();
    move |source| ImportError::Io { what, path, source }
}

/// What an import did, for the report it prints.
#[derive(Debug, Clone)]
pub struct Imported {
    pub recognised: Recognised,
    /// The model's directory (`DIR/NAME`).
    pub dir: PathBuf,
    /// SHA-256 of the ONNX file, lowercase hex.
    pub sha256: String,
    pub replaced: bool,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.recognised;
        let m = &r.manifest;
        writeln!(
            f,
            "{} model {:?} (version {}) in {}",
            if self.replaced {
                "Replaced"
            } else {
                "Imported"
            },
            m.name,
            short_version(&self.sha256),
            self.dir.display()
        )?;
        writeln!(
            f,
            "  layout      {}: detections {} {}, prototypes {} {}",
            r.layout(),
            r.detections.name,
            r.detections.shape_text(),
            r.prototypes.name,
            r.prototypes.shape_text()
        )?;
        let input = &m.input;
        let name = input.name.as_deref().unwrap_or("(first input)");
        if r.fixed_input {
            writeln!(
                f,
                "  input       {name}, fixed {0}x{0} (every image padded to the square)",
                input.size
            )?;
        } else {
            writeln!(
                f,
                "  input       {name}, long side {}, sides padded to a multiple of {}",
                input.size, input.stride
            )?;
        }
        const SHOWN: usize = 5;
        let first: Vec<&str> = m
            .categories
            .iter()
            .take(SHOWN)
            .map(|c| c.category_name.as_str())
            .collect();
        let more = if m.categories.len() > SHOWN {
            ", …"
        } else {
            ""
        };
        writeln!(
            f,
            "  classes     {}: {}{more}",
            m.categories.len(),
            first.join(", ")
        )?;
        if r.coco_ids {
            writeln!(
                f,
                "  ids         COCO category ids (every name is a COCO-80 name)"
            )?;
        } else {
            writeln!(
                f,
                "  ids         1…{} in class order (not every name is a COCO-80 name)",
                m.categories.len()
            )?;
        }
        if !m.aliases.is_empty() {
            writeln!(f, "  aliases     {}", m.aliases.join(", "))?;
        }
        writeln!(
            f,
            "  thresholds  confidence {}, nms_iou {}, mask {}, max_detections {}",
            m.thresholds.confidence,
            m.thresholds.nms_iou,
            m.thresholds.mask,
            m.thresholds.max_detections
        )?;
        write!(
            f,
            "  wrote       {}, {}",
            self.dir.join("model.onnx").display(),
            self.dir.join("model.toml").display()
        )
    }
}

/// Runs `foodseg-worker models ...` (`args` with the program name first) and returns the
/// process exit code: 0 done, 1 refused or failed (the message on stderr), 2 a usage
/// error. `--help` prints the usage and exits 0.
pub fn main(args: Vec<OsString>) -> i32 {
    // clap sees `foodseg-worker models ...` as the program `foodseg-worker models`.
    let args = args.into_iter().skip(1);
    let cli = match ModelsCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match cli.command {
        ModelsCommand::Import(args) => match import(&args) {
            Ok(imported) => {
                println!("{imported}");
                0
            }
            Err(e) => {
                eprintln!("error: {}", chain(&e));
                1
            }
        },
    }
}

/// An error and its causes, one sentence after another.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Imports `args.file` as model `args.name` into `args.models_dir`.
pub fn import(args: &ImportArgs) -> Result<Imported, ImportError> {
    let name = args.name.as_str();
    if !valid_dir_name(name) {
        return Err(ImportError::BadName(name.to_owned()));
    }
    if !args.file.is_file() {
        return Err(ImportError::NotAFile(args.file.clone()));
    }
    let aliases: Vec<String> = args
        .aliases
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    let source = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );

    let dir = &args.models_dir;
    let target = dir.join(name);
    let replaced = target.exists();
    if replaced && !args.replace {
        return Err(ImportError::Exists {
            name: name.to_owned(),
            dir: dir.clone(),
        });
    }

    let summary = foodseg_pipeline::inspect::inspect(&args.file, None)?;
    let recognised = import::recognise(
        &summary,
        &ImportRequest {
            name,
            aliases: &aliases,
            source: &source,
        },
    )
    .map_err(|source| ImportError::Unrecognised {
        file: args.file.clone(),
        source,
    })?;
    let sha256 = foodseg_models::file_sha256(&args.file).map_err(io("cannot read", &args.file))?;
    let text = import::manifest_toml(
        &recognised,
        Provenance {
            file: &source,
            sha256: &sha256,
        },
    );
    match Manifest::from_toml(&text, Path::new("model.toml")) {
        Ok(read) if read == recognised.manifest => {}
        Ok(_) => return Err(ImportError::Manifest("it differs".into())),
        Err(e) => return Err(ImportError::Manifest(e.to_string())),
    }

    std::fs::create_dir_all(dir).map_err(io("cannot create the models directory", dir))?;
    check_ids_free(dir, name, &recognised.manifest)?;

    // Staged two levels down (`DIR/.import-…/NAME`): the registry and the directory
    // watch read `DIR/*/`, so a staged model is invisible until it is moved.
    let staging = Staging::new(dir, name)?;
    let staged = staging.root.join(name);
    std::fs::create_dir(&staged).map_err(io("cannot create", &staged))?;
    copy_synced(&args.file, &staged.join("model.onnx"))?;
    write_synced(&staged.join("model.toml"), text.as_bytes())?;
    let model = Model::load(&staged).map_err(|e| ImportError::Manifest(e.to_string()))?;
    let options = SessionOptions {
        intra_threads: Some(1),
        ..SessionOptions::default()
    };
    foodseg_pipeline::inspect::trial_run(&model, &options).map_err(ImportError::Trial)?;

    if replaced {
        // Each rename replaces one whole file; the manifest goes last, so a reader that
        // sees the new manifest sees the new weights.
        for file in ["model.onnx", "model.toml"] {
            let to = target.join(file);
            std::fs::rename(staged.join(file), &to).map_err(io("cannot move into", &to))?;
        }
    } else {
        std::fs::rename(&staged, &target).map_err(io("cannot move into", &target))?;
    }
    drop(staging);
    Ok(Imported {
        recognised,
        dir: target,
        sha256,
        replaced,
    })
}

/// A model name usable as one directory name.
fn valid_dir_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.trim() == name
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// Refuses ids (name and aliases) that another model of the directory answers to: the
/// registry would refuse the whole directory.
fn check_ids_free(dir: &Path, name: &str, manifest: &Manifest) -> Result<(), ImportError> {
    let entries = std::fs::read_dir(dir).map_err(io("cannot read", dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let manifest_path = path.join("model.toml");
        if entry.file_name() == name || !manifest_path.is_file() {
            continue;
        }
        // A manifest that does not load is not this import's business.
        let Ok(other) = Manifest::from_file(&manifest_path) else {
            continue;
        };
        if let Some(id) = manifest.ids().find(|id| other.ids().any(|o| o == *id)) {
            return Err(ImportError::IdTaken {
                id: id.to_owned(),
                manifest: manifest_path,
            });
        }
    }
    Ok(())
}

/// A staging directory inside the models directory, removed with what is left in it.
struct Staging {
    root: PathBuf,
}

impl Staging {
    fn new(dir: &Path, name: &str) -> Result<Self, ImportError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = dir.join(format!(".import-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&root).map_err(io("cannot create", &root))?;
        Ok(Self { root })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), ImportError> {
    std::fs::copy(from, to).map_err(io("cannot copy the model to", to))?;
    sync(to)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    std::fs::write(path, bytes).map_err(io("cannot write", path))?;
    sync(path)
}

/// Flushes a written file to disk before it is renamed into place.
fn sync(path: &Path) -> Result<(), ImportError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot sync", path))
}
