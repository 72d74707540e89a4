//! Where a job's image comes from: downloaded from its URL, or — for images posted to
//! `POST /v2/uploads`, whose `image_url` is `upload://<job_id>/<filename>` — read from
//! Postgres, where the api stored the bytes with the job.

use bytes::Bytes;
use foodseg_engine::Store;
use foodseg_engine::store::{Job, is_upload_url, upload_job_id};
use tracing::Instrument;

use crate::failure::Failure;
use crate::segment::ImageFetcher;
use foodseg_engine::error_chain as chain;

/// Why an uploaded job cannot run: its bytes were purged (retention or hard maximum age).
pub const UPLOAD_GONE: &str = "uploaded image is no longer stored";

/// A job's image bytes and the `image_id` its result items carry.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub bytes: Bytes,
    pub image_id: String,
}

/// The image of `job`: read from the store when it was uploaded, else downloaded.
pub async fn load(
    store: &Store,
    fetcher: &ImageFetcher,
    job: &Job,
) -> Result<SourceImage, Failure> {
    if is_upload_url(&job.image_url) {
        return load_upload(store, &job.image_url).await;
    }
    let bytes = fetcher.fetch(&job.image_url).await?;
    let image_id = url::Url::parse(&job.image_url)
        .map(|u| foodseg_pipeline::image_id_from_url(&u))
        .unwrap_or_default();
    Ok(SourceImage { bytes, image_id })
}

/// Reads an uploaded image. Its `image_id` is the stored file name (the URL carries it
/// percent-encoded). A missing row is permanent; a database failure may pass.
async fn load_upload(store: &Store, image_url: &str) -> Result<SourceImage, Failure> {
    let Some(job_id) = upload_job_id(image_url) else {
        return Err(Failure::Permanent(format!(
            "image_url {image_url:?} is not a valid upload reference"
        )));
    };
    let span = tracing::info_span!("fetch", source = "upload", bytes = tracing::field::Empty);
    let loaded = store.load_upload(job_id).instrument(span.clone()).await;
    match loaded {
        Ok(Some(upload)) => {
            span.record("bytes", upload.bytes.len());
            Ok(SourceImage {
                bytes: Bytes::from(upload.bytes),
                image_id: upload.filename,
            })
        }
        Ok(None) => Err(Failure::Permanent(UPLOAD_GONE.to_string())),
        Err(e) => Err(Failure::Transient(format!(
            "cannot read the uploaded image: {}",
            chain(&e)
        ))),
    }
}
