//! The photo under a job's result: the uploaded bytes from Postgres, or the image URL
//! downloaded through the same address guard as the worker's (no private, loopback or
//! metadata addresses unless the policy allows them; every redirect checked). Only
//! bytes that sniff as JPEG, PNG or WebP are served, with that type.

use std::time::Duration;

use foodseg_engine::store::{is_upload_url, upload_job_id};
use foodseg_pipeline::{FetchLimits, sniff::sniff};
use salvo::http::HeaderValue;
use salvo::prelude::*;

use super::page::{ConsoleError, path_job};
use crate::request::{ready_state, with_deadline};
use crate::state::AppState;

/// Largest image the console shows.
const MAX_BYTES: u64 = 25 * 1024 * 1024;
/// Deadline of a download, body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect and name lookup bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /console/jobs/{job_id}/image`
#[handler]
pub async fn job_image(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match load(req, depot).await {
        Ok((bytes, mime)) => {
            let headers = res.headers_mut();
            headers.insert("content-type", HeaderValue::from_static(mime));
            headers.insert(
                "cache-control",
                HeaderValue::from_static("private, max-age=300"),
            );
            res.write_body(bytes).ok();
        }
        Err(e) => e.write_to(res),
    }
}

async fn load(req: &Request, depot: &Depot) -> Result<(Vec<u8>, &'static str), ConsoleError> {
    let state = ready_state(depot)?;
    let job = path_job(req, &state).await?;
    let bytes = if is_upload_url(&job.image_url) {
        let id = upload_job_id(&job.image_url)
            .ok_or_else(|| ConsoleError::Image("not a valid upload reference".into()))?;
        with_deadline(state.store.load_upload(id))
            .await?
            .ok_or_else(|| ConsoleError::Image("the uploaded image is no longer stored".into()))?
            .bytes
    } else {
        download(&state, &job.image_url).await?
    };
    let kind = sniff(&bytes).map_err(|foreign| {
        ConsoleError::Image(format!(
            "the bytes are {}, not an image",
            foreign.description()
        ))
    })?;
    Ok((bytes, kind.mime()))
}

async fn download(state: &AppState, image_url: &str) -> Result<Vec<u8>, ConsoleError> {
    let url = url::Url::parse(image_url)
        .map_err(|e| ConsoleError::Image(format!("image_url is not a valid URL: {e}")))?;
    state
        .net_policy
        .check_url(&url, CONNECT_TIMEOUT)
        .await
        .map_err(|refusal| ConsoleError::Image(refusal.to_string()))?;
    let client = state
        .net_policy
        .http_client(CONNECT_TIMEOUT, 3)
        .map_err(|e| ConsoleError::Image(e.to_string()))?;
    let limits = FetchLimits {
        max_bytes: MAX_BYTES,
        total_timeout: FETCH_TIMEOUT,
    };
    let fetched = foodseg_pipeline::fetch(&client, &url, &limits)
        .await
        .map_err(|e| ConsoleError::Image(e.to_string()))?;
    Ok(fetched.bytes.to_vec())
}
