//! A model's current runtime. A job takes the slot's runtime right after its claim and
//! keeps it to the end, so a swap never changes a job's model half-way; the old runtime
//! (sessions and inference loop) is dropped when the last job holding it finishes.

use std::sync::{Arc, RwLock};

use crate::segment::ModelRuntime;

/// One model's current runtime.
pub struct ModelSlot {
    runtime: RwLock<Arc<ModelRuntime>>,
}

impl ModelSlot {
    pub(crate) fn new(runtime: Arc<ModelRuntime>) -> Self {
        ModelSlot {
            runtime: RwLock::new(runtime),
        }
    }

    /// The runtime new jobs get.
    pub fn current(&self) -> Arc<ModelRuntime> {
        self.runtime
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `runtime` in place and gives back the one it replaces.
    pub(crate) fn replace(&self, runtime: Arc<ModelRuntime>) -> Arc<ModelRuntime> {
        std::mem::replace(
            &mut *self.runtime.write().unwrap_or_else(|p| p.into_inner()),
            runtime,
        )
    }
}
