//! Model registry for foodseg: reads `models/<name>/model.toml` manifests, validates them,
//! and resolves a client's `model_id` (a model name or one of its aliases, such as MFR's
//! `"124096"`) to a model, its category list and its ONNX file. This crate does no
//! inference and has no ONNX Runtime dependency, so the api can use it to validate
//! requests cheaply; the pipeline crate reads the same manifests to run the models.

mod error;
mod manifest;
mod registry;

pub use error::{ManifestError, RegistryError, UnknownModel};
pub use manifest::{
    Category, ChannelOrder, InputSpec, Manifest, MaskKind, OutputSpec, PolygonSpec, TensorLayout,
    Thresholds,
};
pub use registry::{Model, Registry};
