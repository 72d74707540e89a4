//! Model registry for foodseg: reads `models/<name>/model.toml` manifests, validates them,
//! and resolves a client's `model_id` (a model name or one of its aliases, such as MFR's
//! `"124096"`) to a model, its category list and its ONNX file. This crate does no
//! inference and has no ONNX Runtime dependency, so the api can use it to validate
//! requests cheaply; the pipeline crate reads the same manifests to run the models.
//! [`import`] recognises an exported YOLO segmentation model from what its ONNX file
//! declares and writes its manifest (`foodseg-worker models import`).

pub mod coco;
mod error;
pub mod import;
mod manifest;
mod names;
mod registry;
mod watch;

pub use error::{ManifestError, RegistryError, UnknownModel};
pub use manifest::{
    Category, ChannelOrder, InputSpec, Manifest, MaskKind, OutputSpec, PolygonSpec, TensorLayout,
    Thresholds,
};
pub use names::{NamesError, parse_class_names};
pub use registry::{Model, Registry, SHORT_VERSION_LEN, file_sha256, short_version};
pub use watch::{Fingerprint, SharedRegistry};
