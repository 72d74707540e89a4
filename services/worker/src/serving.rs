//! The models this worker serves, each in a [`ModelSlot`] whose runtime a reload
//! replaces, and their pull loops, started at start-up and for models added later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foodseg_engine::bus::Bus;
use foodseg_engine::store::WorkerInfo;
use foodseg_engine::{Priority, error_chain};
use foodseg_models::Registry;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::consumer::ModelConsumer;
use crate::error::WorkerError;
use crate::job::JobContext;
use crate::segment::{self, ModelRuntime};
use crate::slot::ModelSlot;

/// What starting a model's pull loop needs, and the slots and loops started so far.
pub(crate) struct Serving {
    pub config: Config,
    pub bus: Bus,
    pub ctx: Arc<JobContext>,
    pub permits: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
    pub release: CancellationToken,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// The worker's registry entry; its model list grows as models are added.
    pub info: watch::Sender<WorkerInfo>,
    pub slots: Mutex<HashMap<String, Arc<ModelSlot>>>,
    pub loops: Mutex<Vec<JoinHandle<()>>>,
}

impl Serving {
    /// Starts pulling `runtime`'s jobs from both lanes of its model.
    pub async fn serve(&self, runtime: Arc<ModelRuntime>) -> Result<(), WorkerError> {
        let name = runtime.name().to_owned();
        let consumer = |lane| {
            self.bus
                .job_consumer(&name, lane, self.ack_wait, self.max_ack_pending)
        };
        let interactive = consumer(Priority::Interactive).await?;
        let bulk = consumer(Priority::Bulk).await?;
        let slot = Arc::new(ModelSlot::new(runtime));
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), slot.clone());
        let model_consumer = ModelConsumer {
            ctx: self.ctx.clone(),
            slot,
            interactive,
            bulk,
            bulk_share: self.config.bulk_share,
            permits: self.permits.clone(),
            tracker: self.tracker.clone(),
            stop: self.stop.clone(),
            release: self.release.clone(),
        };
        self.loops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tokio::spawn(model_consumer.run()));
        self.info.send_modify(|info| {
            if !info.models.contains(&name) {
                info.models.push(name.clone());
                info.models.sort();
            }
        });
        Ok(())
    }

    /// Follows a reloaded models directory: a model whose file or manifest changed gets a
    /// new runtime, loaded and warmed beside the old one before new jobs go to it; an added
    /// model (one `FOODSEG_WORKER_MODELS` names, or any when that is empty) is loaded and
    /// its jobs pulled. A model that no longer loads, or has gone, keeps its runtime.
    pub async fn apply(&self, registry: Registry) {
        let models = match segment::served_models(&self.config, &registry) {
            Ok(models) => models,
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "the reloaded models directory lacks a model this worker serves; keeping the models in use");
                return;
            }
        };
        for model in models {
            let slot = self
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(model.name())
                .cloned();
            let old_version = match &slot {
                Some(slot) if slot.current().model() == &model => continue,
                Some(slot) => Some(slot.current().model().short_version().to_owned()),
                None => None,
            };
            let (name, version) = (model.name().to_owned(), model.short_version().to_owned());
            let runtime = match segment::load_runtimes(&self.config, vec![model]).await {
                Ok(mut loaded) => loaded.remove(0),
                Err(e) => {
                    tracing::error!(model = %name, %version, error = %error_chain(&e),
                        "cannot load the model's new version; keeping the one in use");
                    continue;
                }
            };
            match slot {
                Some(slot) => {
                    drop(slot.replace(runtime));
                    tracing::info!(model = %name, old_version = old_version.as_deref().unwrap_or(""), %version,
                        "model swapped: new jobs run on the new version; the old one is dropped once its jobs are done");
                }
                None => match self.serve(runtime).await {
                    Ok(()) => tracing::info!(model = %name, %version, "model added"),
                    Err(e) => {
                        tracing::error!(model = %name, error = %error_chain(&e), "cannot pull the added model's jobs")
                    }
                },
            }
        }
    }

    /// Waits for every pull loop to end (they end when the worker stops).
    pub async fn join(&self) {
        loop {
            let next = self.loops.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match next {
                Some(handle) => {
                    let _ = handle.await;
                }
                None => break,
            }
        }
    }
}
