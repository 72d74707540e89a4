//! What both ways of sending a directory (one by one, or in batches) share: the outcome
//! of a file, the progress bar, a file's overlay and its name in the summary.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::ApiClient;
use crate::document::{JobDocument, Status};
use crate::error::CliError;

/// What became of one file: its final job document or why there is none, and the seconds
/// it took.
pub(super) type Outcome = (PathBuf, Result<JobDocument, String>, f64);

/// The bar both ways of sending show.
pub(super) fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Draws a successful job's items onto the file `path` into `dir/<stem>.png`; nothing for
/// another job.
pub(super) async fn write_overlay_for(
    client: &ApiClient,
    doc: &JobDocument,
    path: &Path,
    dir: &Path,
) -> Result<(), CliError> {
    if doc.status() != Status::Success {
        return Ok(());
    }
    let image = super::overlay::image_for(client, doc, Some(path)).await?;
    let stem = path
        .file_stem()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    super::overlay::write_overlay(&image, &doc.items()?, &dir.join(format!("{stem}.png")))
}

/// The file's name (the last part of its path).
pub(super) fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
