//! What an ONNX file declares, read with ONNX Runtime: its inputs and outputs (names,
//! element types, shapes with dynamic dimensions as `None`) and its custom metadata, as a
//! [`OnnxSummary`] that [`foodseg_models::import::recognise`] reads; and a trial run of a
//! model directory, as the worker would serve it, before an import puts it in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use foodseg_models::Model;
use foodseg_models::import::{OnnxSummary, TensorSummary};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Outlet, TensorElementType, ValueType};

use crate::postprocess::{self, PostprocessError};
use crate::preprocess;
use crate::runtime::{self, RuntimeError};
use crate::session::{InferenceError, ModelSession, SessionError, SessionOptions, recover};

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot load {} with ONNX Runtime: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("cannot read the metadata of {}: {source}", path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
}

/// Loads `path` with ONNX Runtime (`dylib`, or `ORT_DYLIB_PATH` when `None`; no graph
/// optimisation, one thread: nothing runs) and reports what it declares.
pub fn inspect(path: &Path, dylib: Option<&Path>) -> Result<OnnxSummary, InspectError> {
    let env = runtime::environment(dylib)?;
    let load = |source: ort::Error| InspectError::Load {
        path: path.to_owned(),
        source,
    };
    let session = Session::builder(&env)
        .map_err(load)?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(|e| load(recover(e)))?
        .with_intra_threads(1)
        .map_err(|e| load(recover(e)))?
        .commit_from_file(path)
        .map_err(load)?;
    let metadata_error = |source| InspectError::Metadata {
        path: path.to_owned(),
        source,
    };
    let metadata = session.metadata().map_err(metadata_error)?;
    let mut custom = BTreeMap::new();
    for key in metadata.custom_keys().map_err(metadata_error)? {
        if let Some(value) = metadata.custom(&key) {
            custom.insert(key, value);
        }
    }
    Ok(OnnxSummary {
        inputs: session.inputs().iter().map(summary).collect(),
        outputs: session.outputs().iter().map(summary).collect(),
        metadata: custom,
    })
}

fn summary(outlet: &Outlet) -> TensorSummary {
    let (element_type, shape) = match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => (
            element_name(*ty),
            shape
                .iter()
                .map(|&d| u64::try_from(d).ok())
                .collect::<Vec<_>>(),
        ),
        other => (other.to_string(), Vec::new()),
    };
    TensorSummary {
        name: outlet.name().to_owned(),
        element_type,
        shape,
    }
}

/// ONNX's name of an element type.
fn element_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Float16 => "float16".into(),
        TensorElementType::Bfloat16 => "bfloat16".into(),
        TensorElementType::Float64 => "float64".into(),
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Int32 => "int32".into(),
        TensorElementType::Uint8 => "uint8".into(),
        TensorElementType::Int8 => "int8".into(),
        TensorElementType::Bool => "bool".into(),
        other => other.to_string(),
    }
}

/// Why a model failed its trial run.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("model {model}: {source}")]
    Inference {
        model: String,
        #[source]
        source: InferenceError,
    },
    #[error("model {model}: {source}")]
    Postprocess {
        model: String,
        #[source]
        source: PostprocessError,
    },
}

/// Loads `model` as the worker does (its tensor names and labels checked against the
/// file), runs it once on a blank square image of its input size and decodes the outputs
/// as its manifest says. Returns the number of detections (none are expected).
pub fn trial_run(model: &Model, options: &SessionOptions) -> Result<usize, TrialError> {
    let session = ModelSession::load(model, options)?;
    let spec = &model.manifest().input;
    let side = spec.size;
    let blank = image::RgbImage::from_pixel(side, side, image::Rgb([spec.letterbox_pad; 3]));
    let input = preprocess::preprocess(&blank, [side, side], spec);
    let outputs = session
        .infer(&input)
        .map_err(|source| TrialError::Inference {
            model: model.name().to_owned(),
            source,
        })?;
    let found = postprocess::detections(model, &outputs, &input.letterbox).map_err(|source| {
        TrialError::Postprocess {
            model: model.name().to_owned(),
            source,
        }
    })?;
    Ok(found.len())
}
