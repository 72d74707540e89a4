//! `foodseg overlay <job_id> -o out.png`, and the overlay step of the submit commands.

use std::path::Path;

use image::{ImageFormat, RgbImage};

use crate::cli::OverlayArgs;
use crate::client::{ApiClient, api_error};
use crate::document::{Item, JobDocument, Status};
use crate::error::CliError;
use crate::picture::{LocalImage, decode_upright};
use crate::render::render;

pub async fn run(client: ApiClient, args: OverlayArgs) -> Result<(), CliError> {
    let doc = client.status(&args.job_id).await?;
    if doc.status() != Status::Success {
        return Err(CliError::NotFinished {
            job_id: doc.job_id,
            status: doc.status,
        });
    }
    let items = doc.items()?;
    let image = image_for(&client, &doc, args.image.as_deref()).await?;
    write_overlay(&image, &items, &args.output)?;
    println!(
        "{}: {} item{} drawn",
        args.output.display(),
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The job's picture, upright: from `local` when given, else downloaded from its URL.
pub async fn image_for(
    client: &ApiClient,
    doc: &JobDocument,
    local: Option<&Path>,
) -> Result<RgbImage, CliError> {
    if let Some(path) = local {
        let file = LocalImage::read(path)?;
        return decode_upright(&file.bytes, &path.display().to_string());
    }
    let url = &doc.request.image_url;
    let fetch_err = |reason: String| CliError::FetchImage {
        url: url.clone(),
        reason,
    };
    let res = client
        .http()
        .get(url)
        .send()
        .await
        .map_err(|e| fetch_err(e.to_string()))?;
    let status = res.status();
    let bytes = res.bytes().await.map_err(|e| fetch_err(e.to_string()))?;
    if !status.is_success() {
        return Err(fetch_err(api_error(status, &bytes).to_string()));
    }
    decode_upright(&bytes, url)
}

/// Renders and writes the PNG.
pub fn write_overlay(image: &RgbImage, items: &[Item], out: &Path) -> Result<(), CliError> {
    let drawn = render(image, items)?;
    drawn
        .save_with_format(out, ImageFormat::Png)
        .map_err(|source| CliError::EncodePng {
            path: out.to_path_buf(),
            source,
        })
}
