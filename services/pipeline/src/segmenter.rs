//! The top-level API: sessions for every model, and `segment` = preprocess → inference
//! → postprocess, each stage also callable on its own with its own tracing span.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foodseg_models::{Model, Registry};

use crate::decode::{DecodeError, DecodedImage};
use crate::item::{Item, build_items};
use crate::postprocess::{self, PostprocessError};
use crate::preprocess::{self, Preprocessed};
use crate::session::{InferenceError, ModelSession, RawOutputs, SessionError, SessionOptions};

/// Wall time of each stage for one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimings {
    /// Copied from the [`DecodedImage`]; zero when it was not decoded by this crate.
    pub decode: Duration,
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

/// The result for one image.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub items: Vec<Item>,
    pub timings: StageTimings,
}

/// Why an image could not be segmented.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("model {0:?} is not loaded in this worker")]
    ModelNotLoaded(String),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Postprocess(#[from] PostprocessError),
}

impl SegmentError {
    /// Permanent errors fail the job at once; others are worth a retry (possibly on
    /// another worker).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Decode(e) => e.is_permanent(),
            Self::ModelNotLoaded(_) => false,
            Self::Inference(e) => e.is_permanent(),
            Self::Postprocess(_) => true,
        }
    }
}

/// Loaded sessions by model name. Cheap to clone; `segment` blocks, so call it from
/// `tokio::task::spawn_blocking`.
#[derive(Debug, Clone, Default)]
pub struct Segmenter {
    sessions: HashMap<String, Arc<ModelSession>>,
}

impl Segmenter {
    /// Loads a session for every model in the registry.
    pub fn load(registry: &Registry, options: &SessionOptions) -> Result<Self, SessionError> {
        Self::load_models(registry.models(), options)
    }

    /// Loads sessions for the given models.
    pub fn load_models<'a>(
        models: impl IntoIterator<Item = &'a Model>,
        options: &SessionOptions,
    ) -> Result<Self, SessionError> {
        let mut sessions = HashMap::new();
        for model in models {
            let session = ModelSession::load(model, options)?;
            sessions.insert(model.name().to_owned(), Arc::new(session));
        }
        Ok(Self { sessions })
    }

    /// The session for a model (by manifest name).
    pub fn session(&self, model: &Model) -> Result<&Arc<ModelSession>, SegmentError> {
        self.sessions
            .get(model.name())
            .ok_or_else(|| SegmentError::ModelNotLoaded(model.name().to_owned()))
    }

    /// Runs every stage after decoding for one image.
    pub fn segment(
        &self,
        model: &Model,
        image: &DecodedImage,
        image_id: &str,
    ) -> Result<Segmentation, SegmentError> {
        let session = self.session(model)?;
        let mut timings = StageTimings {
            decode: image.decode_time,
            ..StageTimings::default()
        };
        let start = Instant::now();
        let input = preprocess_stage(session, image);
        timings.preprocess = start.elapsed();

        let start = Instant::now();
        let outputs = inference_stage(session, &input)?;
        timings.inference = start.elapsed();

        let start = Instant::now();
        let items = postprocess_stage(session, &outputs, &input, image_id)?;
        timings.postprocess = start.elapsed();
        Ok(Segmentation { items, timings })
    }
}

/// Letterbox and tensor conversion for `session`'s model.
pub fn preprocess_stage(session: &ModelSession, image: &DecodedImage) -> Preprocessed {
    let model = session.model();
    let span = tracing::info_span!(
        "preprocess",
        model = model.name(),
        width = image.width(),
        height = image.height()
    );
    let _enter = span.enter();
    preprocess::preprocess(&image.image, &model.manifest().input)
}

/// One model run.
pub fn inference_stage(
    session: &ModelSession,
    input: &Preprocessed,
) -> Result<RawOutputs, InferenceError> {
    let span = tracing::info_span!(
        "inference",
        model = session.model().name(),
        device = %session.device(),
        input_width = input.letterbox.input_width,
        input_height = input.letterbox.input_height
    );
    let _enter = span.enter();
    session.infer(input)
}

/// Detections, masks and polygons in original-image coordinates, as contract items.
pub fn postprocess_stage(
    session: &ModelSession,
    outputs: &RawOutputs,
    input: &Preprocessed,
    image_id: &str,
) -> Result<Vec<Item>, PostprocessError> {
    let model = session.model();
    let lb = &input.letterbox;
    let span = tracing::info_span!(
        "postprocess",
        model = model.name(),
        width = lb.image_width,
        height = lb.image_height,
        detections = tracing::field::Empty
    );
    let _enter = span.enter();
    let detections = postprocess::detections(model, outputs, lb)?;
    let tolerance = model.manifest().polygons.tolerance_px;
    let items = build_items(
        model,
        &detections,
        image_id,
        [lb.image_width, lb.image_height],
        tolerance,
    );
    span.record("detections", items.len());
    Ok(items)
}
