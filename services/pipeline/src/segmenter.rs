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

/// Loaded sessions by model name, and the stages after decoding. `segment` runs them
/// all for one image; a caller that overlaps images (a worker fetching and decoding the
/// next image during inference of the current one) calls [`Segmenter::preprocess`],
/// [`Segmenter::infer`] and [`Segmenter::postprocess`] itself. Each stage opens its own
/// tracing span. Cheap to clone; the stages block, so call them from
/// `tokio::task::spawn_blocking`. Runs of one model's session are serialised.
#[derive(Debug, Clone, Default)]
pub struct Segmenter {
    sessions: Arc<HashMap<String, Arc<ModelSession>>>,
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
        let sessions = models
            .into_iter()
            .map(|model| ModelSession::load(model, options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_sessions(sessions))
    }

    /// Serves already loaded sessions (owned, or shared with the caller).
    pub fn from_sessions<S: Into<Arc<ModelSession>>>(
        sessions: impl IntoIterator<Item = S>,
    ) -> Self {
        let sessions = sessions
            .into_iter()
            .map(|session| {
                let session = session.into();
                (session.model().name().to_owned(), session)
            })
            .collect();
        Self {
            sessions: Arc::new(sessions),
        }
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
        let mut timings = StageTimings {
            decode: image.decode_time,
            ..StageTimings::default()
        };
        let start = Instant::now();
        let input = self.preprocess(model, image)?;
        timings.preprocess = start.elapsed();

        let start = Instant::now();
        let outputs = self.infer(model, &input)?;
        timings.inference = start.elapsed();

        let start = Instant::now();
        let items = self.postprocess(model, &outputs, &input, image_id)?;
        timings.postprocess = start.elapsed();
        Ok(Segmentation { items, timings })
    }

    /// Letterbox and tensor conversion for `model`'s input.
    pub fn preprocess(
        &self,
        model: &Model,
        image: &DecodedImage,
    ) -> Result<Preprocessed, SegmentError> {
        let session = self.session(model)?;
        let model = session.model();
        let span = tracing::info_span!(
            "preprocess",
            model = model.name(),
            width = image.width(),
            height = image.height()
        );
        let _enter = span.enter();
        Ok(preprocess::preprocess(
            &image.image,
            image.original,
            &model.manifest().input,
        ))
    }

    /// One model run; waits while another run of the same model is under way.
    pub fn infer(&self, model: &Model, input: &Preprocessed) -> Result<RawOutputs, SegmentError> {
        let session = self.session(model)?;
        let span = tracing::info_span!(
            "inference",
            model = model.name(),
            device = %session.device(),
            input_width = input.letterbox.input_width,
            input_height = input.letterbox.input_height
        );
        let _enter = span.enter();
        Ok(session.infer(input)?)
    }

    /// Detections, masks and polygons in original-image coordinates, as contract items.
    pub fn postprocess(
        &self,
        model: &Model,
        outputs: &RawOutputs,
        input: &Preprocessed,
        image_id: &str,
    ) -> Result<Vec<Item>, SegmentError> {
        let session = self.session(model)?;
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
}
