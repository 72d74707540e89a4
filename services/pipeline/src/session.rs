//! One ONNX Runtime session per model: execution provider selection (CPU, or CUDA with
//! no silent CPU fallback), threading, and running a preprocessed input to owned outputs.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

use foodseg_models::{Model, OutputSpec};
use ndarray::{ArrayD, Axis, Slice};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::preprocess::Preprocessed;
use crate::runtime::{self, RuntimeError};

/// Where inference runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    Cuda {
        device_id: i32,
    },
}

impl FromStr for Device {
    type Err = String;

    /// Parses `cpu`, `cuda` (device 0) or `cuda:<id>`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda { device_id: 0 }),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|id| id.parse().ok())
                .map(|device_id| Self::Cuda { device_id })
                .ok_or_else(|| format!("unknown device {s:?}: expected cpu, cuda or cuda:<id>")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

/// How sessions are built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// The ONNX Runtime library; `ORT_DYLIB_PATH` when `None`.
    pub dylib_path: Option<PathBuf>,
    pub device: Device,
    /// Intra-op threads; the number of available cores when `None`.
    pub intra_threads: Option<usize>,
}

/// Why a model session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "CUDA execution provider (device {device_id}) is unavailable: {source}. The loaded ONNX \
         Runtime needs CUDA support (the onnxruntime-gpu library) and a visible GPU; \
         configure the CPU device to run without one"
    )]
    CudaUnavailable {
        device_id: i32,
        #[source]
        source: ort::Error,
    },
    #[error("cannot configure ONNX Runtime session for model {model}: {source}")]
    Configure {
        model: String,
        #[source]
        source: ort::Error,
    },
    #[error("cannot load model {model} from {}: {source}", path.display())]
    Load {
        model: String,
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error(
        "model {model}: category {index} is {} in model.toml but {} in the model's own label \
         set; items must carry the model's labels character for character",
        label(manifest.as_deref()),
        label(own.as_deref())
    )]
    Labels {
        model: String,
        index: usize,
        /// `None` when the manifest has fewer categories than the model.
        manifest: Option<String>,
        /// `None` when the model has fewer labels than the manifest.
        own: Option<String>,
    },
    #[error("model {model} failed its warm-up run: {source}")]
    WarmUp {
        model: String,
        #[source]
        source: InferenceError,
    },
    #[error("model {model} has no {kind} tensor {name:?} (it has: {})", available.join(", "))]
    MissingTensor {
        model: String,
        kind: &'static str,
        name: String,
        available: Vec<String>,
    },
}

/// A category name as an error message shows it.
fn label(name: Option<&str>) -> String {
    name.map_or_else(|| "missing".to_owned(), |n| format!("{n:?}"))
}

/// Why a run failed. Runtime failures (for example device out of memory) are transient.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("cannot build input tensor: {0}")]
    Input(#[source] ort::Error),
    #[error("inference failed: {0}")]
    Run(#[source] ort::Error),
    #[error("model output {name:?} is missing")]
    MissingOutput { name: String },
    #[error("model output {name:?} is not a float or integer tensor: {source}")]
    OutputType {
        name: String,
        #[source]
        source: ort::Error,
    },
}

impl InferenceError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::MissingOutput { .. } | Self::OutputType { .. })
    }
}

/// An output tensor copied out of the session.
#[derive(Debug, Clone)]
pub enum OutputTensor {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl OutputTensor {
    /// Image `index` of a batched output, keeping a batch axis of one.
    fn image(&self, index: usize) -> Self {
        fn one<T: Clone>(a: &ArrayD<T>, index: usize) -> ArrayD<T> {
            a.slice_axis(Axis(0), Slice::from(index..=index)).to_owned()
        }
        match self {
            Self::F32(a) => Self::F32(one(a, index)),
            Self::I64(a) => Self::I64(one(a, index)),
        }
    }
}

/// The outputs a model's layout needs, by name.
#[derive(Debug, Clone, Default)]
pub struct RawOutputs {
    pub tensors: Vec<(String, OutputTensor)>,
}

impl RawOutputs {
    pub fn get(&self, name: &str) -> Option<&OutputTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// A loaded model. `Session::run` needs exclusive access, so runs are serialised per
/// model; ONNX Runtime parallelises inside a run with its intra-op threads.
#[derive(Debug)]
pub struct ModelSession {
    model: Model,
    session: Mutex<Session>,
    input_name: String,
    output_names: Vec<String>,
    device: Device,
}

impl ModelSession {
    /// Builds the session for `model`.
    pub fn load(model: &Model, options: &SessionOptions) -> Result<Self, SessionError> {
        let env = runtime::environment(options.dylib_path.as_deref())?;
        let name = model.name().to_owned();
        let configure = |source: ort::Error| SessionError::Configure {
            model: name.clone(),
            source,
        };
        let threads = options.intra_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let mut builder = Session::builder(&env)
            .map_err(configure)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| configure(recover(e)))?
            .with_intra_threads(threads)
            .map_err(|e| configure(recover(e)))?;
        builder = match options.device {
            Device::Cpu => builder
                .with_execution_providers([cpu_provider().build().error_on_failure()])
                .map_err(|e| configure(recover(e)))?,
            Device::Cuda { device_id } => {
                let cuda = ort::ep::CUDA::default()
                    .with_device_id(device_id)
                    .build()
                    .error_on_failure();
                builder.with_execution_providers([cuda]).map_err(|e| {
                    SessionError::CudaUnavailable {
                        device_id,
                        source: recover(e),
                    }
                })?
            }
        };
        let session = builder
            .commit_from_file(model.onnx_path())
            .map_err(|source| SessionError::Load {
                model: name.clone(),
                path: model.onnx_path().to_owned(),
                source,
            })?;
        let (input_name, output_names) = check_tensors(model, &session)?;
        check_labels(model, &session)?;
        tracing::info!(model = %name, device = %options.device, threads, "model session ready");
        Ok(Self {
            model: model.clone(),
            session: Mutex::new(session),
            input_name,
            output_names,
            device: options.device,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the model once on a blank square image of its input size, outputs copied as
    /// for a job, so that the runtime's first-run work (memory planning, kernel choice)
    /// is done before the session serves anyone. A model that cannot run fails here.
    pub fn warm_up(&self) -> Result<(), SessionError> {
        let spec = &self.model.manifest().input;
        let side = spec.size;
        let blank = image::RgbImage::from_pixel(side, side, image::Rgb([spec.letterbox_pad; 3]));
        let input = crate::preprocess::preprocess(&blank, [side, side], spec);
        self.infer(&input)
            .map(drop)
            .map_err(|source| SessionError::WarmUp {
                model: self.model.name().to_owned(),
                source,
            })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs the model and copies the outputs its layout needs.
    pub fn infer(&self, input: &Preprocessed) -> Result<RawOutputs, InferenceError> {
        let tensor = TensorRef::from_array_view((input.shape(), input.tensor.as_slice()))
            .map_err(InferenceError::Input)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(InferenceError::Run)?;
        let mut raw = RawOutputs::default();
        for name in &self.output_names {
            let value = outputs
                .get(name)
                .ok_or_else(|| InferenceError::MissingOutput { name: name.clone() })?;
            raw.tensors.push((name.clone(), extract(name, value)?));
        }
        Ok(raw)
    }

    /// Whether several images can share one run: the layout reads a batch axis (YOLO-seg,
    /// both layouts; Mask R-CNN exports take one image).
    pub fn batches(&self) -> bool {
        matches!(
            self.model.manifest().output,
            OutputSpec::YoloSeg { .. } | OutputSpec::Yolov8Seg { .. }
        )
    }

    /// Runs several images and returns each image's outputs (batch axis of one, as
    /// [`ModelSession::infer`] gives). Images of the same input shape share one run
    /// (phone photos of one orientation do); other shapes get runs of their own, so an
    /// image's result never depends on the others in its batch. A model that does not
    /// batch runs them one by one.
    pub fn infer_batch(&self, inputs: &[&Preprocessed]) -> Result<Vec<RawOutputs>, InferenceError> {
        if inputs.len() <= 1 || !self.batches() {
            return inputs.iter().map(|input| self.infer(input)).collect();
        }
        let mut outputs: Vec<Option<RawOutputs>> = vec![None; inputs.len()];
        while let Some(first) = outputs.iter().position(Option::is_none) {
            let shape = inputs[first].shape();
            let group: Vec<usize> = (first..inputs.len())
                .filter(|&i| outputs[i].is_none() && inputs[i].shape() == shape)
                .collect();
            let run: Vec<&Preprocessed> = group.iter().map(|&i| inputs[i]).collect();
            for (i, raw) in group.into_iter().zip(self.infer_same_shape(&run)?) {
                outputs[i] = Some(raw);
            }
        }
        Ok(outputs.into_iter().flatten().collect())
    }

    /// One run over images of one input shape.
    fn infer_same_shape(
        &self,
        inputs: &[&Preprocessed],
    ) -> Result<Vec<RawOutputs>, InferenceError> {
        if let [input] = inputs {
            return Ok(vec![self.infer(input)?]);
        }
        let [_, channels, height, width] = inputs[0].shape();
        let batch: Vec<f32> = inputs
            .iter()
            .flat_map(|input| input.tensor.iter().copied())
            .collect();
        let shape = [inputs.len(), channels, height, width];
        let tensor =
            TensorRef::from_array_view((shape, batch.as_slice())).map_err(InferenceError::Input)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(InferenceError::Run)?;
        let mut per_image = vec![RawOutputs::default(); inputs.len()];
        for name in &self.output_names {
            let value = outputs
                .get(name)
                .ok_or_else(|| InferenceError::MissingOutput { name: name.clone() })?;
            let tensor = extract(name, value)?;
            for (index, raw) in per_image.iter_mut().enumerate() {
                raw.tensors.push((name.clone(), tensor.image(index)));
            }
        }
        Ok(per_image)
    }

    /// Runs the model and discards its outputs (a baseline for benchmarks).
    pub fn run_bare(&self, input: &Preprocessed) -> Result<(), InferenceError> {
        let tensor = TensorRef::from_array_view((input.shape(), input.tensor.as_slice()))
            .map_err(InferenceError::Input)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(InferenceError::Run)?;
        drop(outputs);
        Ok(())
    }
}

/// Copies an output out of the session as f32 or i64 (i32 widened).
fn extract(name: &str, value: &ort::value::DynValue) -> Result<OutputTensor, InferenceError> {
    if let Ok(array) = value.try_extract_array::<f32>() {
        return Ok(OutputTensor::F32(array.to_owned()));
    }
    if let Ok(array) = value.try_extract_array::<i64>() {
        return Ok(OutputTensor::I64(array.to_owned()));
    }
    match value.try_extract_array::<i32>() {
        Ok(array) => Ok(OutputTensor::I64(array.mapv(i64::from))),
        Err(source) => Err(InferenceError::OutputType {
            name: name.to_owned(),
            source,
        }),
    }
}

/// The CPU execution provider with ONNX Runtime's memory arena on. The arena keeps the
/// buffers of one run for the next; `ort`'s default turns it off, and then every run
/// allocates its intermediate tensors afresh: a YOLOv5s-seg run on 640×608 took 272 ms
/// instead of 189 ms on 2 cores (`just bench-worker`).
fn cpu_provider() -> ort::ep::CPU {
    ort::ep::CPU::default().with_arena_allocator(true)
}

/// Drops the builder an `ort` builder error carries, keeping code and message.
pub(crate) fn recover<R>(error: ort::Error<R>) -> ort::Error {
    ort::Error::new_with_code(error.code(), error.message())
}

/// When the model file carries its label set (metadata `names`: a JSON list of class
/// names in index order, or the Python dict of index to name Ultralytics writes; see
/// [`foodseg_models::parse_class_names`]), the manifest must name every category exactly
/// so: what clients receive is the model's own vocabulary. Metadata `names` that is
/// neither is not checked.
fn check_labels(model: &Model, session: &Session) -> Result<(), SessionError> {
    let own = session
        .metadata()
        .ok()
        .and_then(|metadata| metadata.custom("names"))
        .and_then(|names| foodseg_models::parse_class_names(&names).ok());
    let Some(own) = own else {
        return Ok(());
    };
    let manifest: Vec<&str> = model
        .manifest()
        .categories
        .iter()
        .map(|c| c.category_name.as_str())
        .collect();
    let differs = (0..own.len().max(manifest.len()))
        .find(|&i| own.get(i).map(String::as_str) != manifest.get(i).copied());
    match differs {
        None => Ok(()),
        Some(index) => Err(SessionError::Labels {
            model: model.name().to_owned(),
            index,
            manifest: manifest.get(index).map(|&n| n.to_owned()),
            own: own.get(index).cloned(),
        }),
    }
}

/// Checks that the manifest's tensor names exist; returns the input name and the
/// output names the layout reads.
fn check_tensors(model: &Model, session: &Session) -> Result<(String, Vec<String>), SessionError> {
    let inputs: Vec<String> = session
        .inputs()
        .iter()
        .map(|o| o.name().to_owned())
        .collect();
    let outputs: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_owned())
        .collect();
    let missing = |kind, name: &str, available: &[String]| SessionError::MissingTensor {
        model: model.name().to_owned(),
        kind,
        name: name.to_owned(),
        available: available.to_vec(),
    };
    let input_name = match &model.manifest().input.name {
        Some(name) if inputs.contains(name) => name.clone(),
        Some(name) => return Err(missing("input", name, &inputs)),
        None => inputs
            .first()
            .cloned()
            .ok_or_else(|| missing("input", "<any>", &inputs))?,
    };
    let wanted: Vec<&String> = match &model.manifest().output {
        OutputSpec::YoloSeg {
            detections,
            prototypes,
            ..
        }
        | OutputSpec::Yolov8Seg {
            detections,
            prototypes,
            ..
        } => vec![detections, prototypes],
        OutputSpec::MaskRcnn {
            boxes,
            labels,
            scores,
            masks,
            ..
        } => [Some(boxes), Some(labels), scores.as_ref(), Some(masks)]
            .into_iter()
            .flatten()
            .collect(),
    };
    for name in &wanted {
        if !outputs.contains(name) {
            return Err(missing("output", name, &outputs));
        }
    }
    Ok((input_name, wanted.into_iter().cloned().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_provider_keeps_the_memory_arena() {
        let provider = format!("{:?}", cpu_provider());
        assert_eq!(provider, "CPU { use_arena: true }");
    }
}
