//! The worker's use of the segmentation pipeline library: one ONNX Runtime session per
//! model served, image download through the private-address guard, and the stages of a
//! job (decode, then the [`Segmenter`]'s preprocess, inference and postprocess) with
//! their failures classified.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foodseg_engine::netguard::{NetPolicy, Refusal};
use foodseg_models::{Model, Registry};
use foodseg_pipeline::session::RawOutputs;
use foodseg_pipeline::{
    DecodeLimits, DecodedImage, FetchLimits, ModelSession, Preprocessed, SegmentError, Segmenter,
    SessionOptions,
};
use url::Url;

use crate::batch::{Batcher, InFlight, Sessions};
use crate::config::{BatchConfig, Config, ImageLimits};
use crate::error::WorkerError;
use crate::failure::Failure;

/// A model this worker serves: the pipeline's [`Segmenter`] over its session, with the
/// worker's limits and failure classification. Inference runs one at a time per
/// session (ONNX Runtime parallelises inside a run), over a micro-batch of the jobs
/// ready for it ([`Batcher`]); the other jobs in flight fetch, decode and postprocess
/// meanwhile.
pub struct ModelRuntime {
    segmenter: Segmenter,
    session: Arc<ModelSession>,
    batcher: Batcher,
    decode_limits: DecodeLimits,
}

impl ModelRuntime {
    /// Serves a model's sessions; starts its inference loop on the current Tokio runtime.
    pub fn new(sessions: Sessions, limits: &ImageLimits, batch: BatchConfig) -> Self {
        let session = sessions.wide.clone();
        ModelRuntime {
            segmenter: Segmenter::from_sessions([session.clone()]),
            batcher: Batcher::start(sessions, batch),
            session,
            decode_limits: DecodeLimits {
                max_pixels: limits.max_pixels,
            },
        }
    }

    /// Serves one session (no parallel lanes).
    pub fn single(session: ModelSession, limits: &ImageLimits, batch: BatchConfig) -> Self {
        let sessions = Sessions {
            wide: Arc::new(session),
            lanes: Vec::new(),
        };
        Self::new(sessions, limits, batch)
    }

    /// Counts a job of this model in flight while the guard lives (it steers inference
    /// between the all-threads session and the parallel lanes).
    pub fn job(&self) -> InFlight {
        self.batcher.job()
    }

    pub fn name(&self) -> &str {
        self.session.model().name()
    }

    pub fn model(&self) -> &Model {
        self.session.model()
    }

    pub fn session(&self) -> &Arc<ModelSession> {
        &self.session
    }

    /// Bytes to an upright RGB image (blocking), no larger than the model needs: a
    /// large JPEG is decoded at a reduced scale that still covers the model's input.
    /// Every decode failure is permanent.
    pub fn decode(&self, bytes: &Bytes) -> Result<DecodedImage, Failure> {
        let cover = self.model().manifest().input.size;
        foodseg_pipeline::decode_to_cover(bytes, &self.decode_limits, cover)
            .map_err(|e| Failure::from(SegmentError::from(e)))
    }

    /// Letterbox and tensor (blocking).
    pub fn preprocess(&self, image: DecodedImage) -> Result<Preprocessed, Failure> {
        self.segmenter
            .preprocess(self.model(), &image)
            .map_err(Failure::from)
    }

    /// Runs the model on `input` in the next batch, off the async threads.
    pub async fn infer(&self, input: Arc<Preprocessed>) -> Result<RawOutputs, Failure> {
        self.batcher.infer(input).await
    }

    /// Detections to v1 items (blocking).
    pub fn postprocess(
        &self,
        outputs: RawOutputs,
        input: &Preprocessed,
        image_id: &str,
    ) -> Result<serde_json::Value, Failure> {
        let items = self
            .segmenter
            .postprocess(self.model(), &outputs, input, image_id)
            .map_err(Failure::from)?;
        serde_json::to_value(items)
            .map_err(|e| Failure::Permanent(format!("cannot encode the result: {e}")))
    }
}

impl Drop for ModelRuntime {
    fn drop(&mut self) {
        tracing::debug!(
            model = self.name(),
            version = self.model().short_version(),
            "model runtime dropped: its sessions are freed"
        );
    }
}

/// Loads the models this worker serves and a session for each. Fails — before anything
/// is consumed — when a model or its execution provider cannot load (CUDA asked for but
/// unavailable is an error, never a silent CPU fallback).
pub async fn load_models(config: &Config) -> Result<Vec<Arc<ModelRuntime>>, WorkerError> {
    let registry = Registry::load(&config.common.models_dir)?;
    load_runtimes(config, served_models(config, &registry)?).await
}

/// The registry's models this worker serves: those `FOODSEG_WORKER_MODELS` names, or all.
pub fn served_models(config: &Config, registry: &Registry) -> Result<Vec<Model>, WorkerError> {
    if config.models.is_empty() {
        return Ok(registry.models().to_vec());
    }
    config
        .models
        .iter()
        .map(|id| {
            registry
                .get(id)
                .cloned()
                .ok_or_else(|| WorkerError::NoModel(format!("{id:?} is not in the registry")))
        })
        .collect()
}

/// Loads a session (and the parallel lanes' sessions) for each model and runs each
/// session once on a blank input, so the first job does not pay for the runtime's
/// first-run setup. A runtime comes back only once it is warm.
pub async fn load_runtimes(
    config: &Config,
    models: Vec<Model>,
) -> Result<Vec<Arc<ModelRuntime>>, WorkerError> {
    let options = SessionOptions {
        dylib_path: None,
        device: config.device,
        intra_threads: config.intra_threads,
    };
    let lane_options = SessionOptions {
        intra_threads: Some(1),
        ..options.clone()
    };
    let (limits, batch) = (config.image, config.batch);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _runtime = runtime.enter();
        models
            .iter()
            .map(|model| {
                let load = |options: &SessionOptions| {
                    ModelSession::load(model, options)
                        .and_then(|session| session.warm_up().map(|()| session))
                        .map(Arc::new)
                        .map_err(|source| WorkerError::Model {
                            model: model.name().to_string(),
                            source,
                        })
                };
                let lanes = if batch.parallel_runs > 1 {
                    (0..batch.parallel_runs)
                        .map(|_| load(&lane_options))
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                let sessions = Sessions {
                    wide: load(&options)?,
                    lanes,
                };
                Ok(Arc::new(ModelRuntime::new(sessions, &limits, batch)))
            })
            .collect()
    })
    .await
    .map_err(|e| WorkerError::NoModel(format!("model loading crashed: {e}")))?
}

/// Downloads images under the worker's limits and address policy.
pub struct ImageFetcher {
    client: reqwest::Client,
    policy: NetPolicy,
    limits: FetchLimits,
    /// Bound on the first URL's name lookup.
    lookup_timeout: Duration,
}

impl ImageFetcher {
    /// A client whose resolver refuses non-public addresses (unless allowed) and whose
    /// redirects (at most `limits.max_redirects`) are checked hop by hop.
    pub fn new(policy: &NetPolicy, limits: ImageLimits) -> Result<Self, WorkerError> {
        let client = policy
            .http_client(limits.connect_timeout, limits.max_redirects)
            .map_err(WorkerError::HttpClient)?;
        Ok(ImageFetcher {
            client,
            policy: policy.clone(),
            limits: FetchLimits {
                max_bytes: limits.max_bytes,
                total_timeout: limits.fetch_timeout,
            },
            lookup_timeout: limits.connect_timeout,
        })
    }

    /// Downloads `image_url`, classifying every failure.
    pub async fn fetch(&self, image_url: &str) -> Result<Bytes, Failure> {
        let url = Url::parse(image_url)
            .map_err(|e| Failure::Permanent(format!("image_url is not a valid URL: {e}")))?;
        self.precheck(&url).await?;
        match foodseg_pipeline::fetch(&self.client, &url, &self.limits).await {
            Ok(fetched) => Ok(fetched.bytes),
            Err(e) => Err(Failure::from(e)),
        }
    }

    /// Refuses a first URL that is, or resolves only to, a refused address, with a clear
    /// message. (The client's resolver enforces the same rule on every connection.) A
    /// host that cannot be resolved now is a transient failure.
    async fn precheck(&self, url: &Url) -> Result<(), Failure> {
        self.policy
            .check_url(url, self.lookup_timeout)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Resolves { host, blocked } => {
                    Failure::Permanent(format!("image_url host {host} is refused: {blocked}"))
                }
                r if r.is_permanent() => Failure::Permanent(format!("image_url is refused: {r}")),
                r => Failure::Transient(format!("image_url: {r}")),
            })
    }
}
