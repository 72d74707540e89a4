//! Jobs made directly through the store, for tests that need a job in some state without
//! a worker or a scheduler.

use std::time::Duration;

use foodseg_engine::store::{ClaimOutcome, NewJob};
use foodseg_engine::{Attempt, JobId, Store};

/// A job for `image_url` on the default model (`124096`), with a webhook URL and one
/// attempt.
pub fn new_job(image_url: &str) -> NewJob {
    NewJob {
        id: JobId::new(),
        model_id: "124096".into(),
        model_name: "yolov5s-seg-coco".into(),
        image_url: image_url.into(),
        webhook_url: Some("https://mfr.example.org/hook".into()),
        max_attempts: Attempt::new(1),
        trace_id: None,
        traceparent: None,
        owner: None,
        priority: Default::default(),
        batch_id: None,
    }
}

/// A job enqueued, claimed and finished with SUCCESS (no items): its webhook delivery is
/// pending.
pub async fn finished_job(store: &Store) -> anyhow::Result<JobId> {
    let job = store
        .enqueue(&new_job("https://img.example.org/dish.jpg"), "test")
        .await?;
    let ClaimOutcome::Claimed { fence, .. } =
        store.claim(job.id, "w", Duration::from_secs(60)).await?
    else {
        anyhow::bail!("job {} not claimed", job.id);
    };
    store
        .succeed(&fence, &serde_json::json!([]), "test-version")
        .await?;
    Ok(job.id)
}
