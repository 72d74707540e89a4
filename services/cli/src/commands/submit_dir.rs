//! `foodseg submit-dir <dir>`: every image of a directory, a progress bar, a summary.
//! The images are uploaded (or served locally) one by one; with `--base-url` they are
//! sent as batches instead ([`super::submit_batches`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;

use super::dir_files::{Outcome, display_name, progress_bar, write_overlay_for};
use crate::cli::SubmitDirArgs;
use crate::client::ApiClient;
use crate::document::{JobDocument, Status};
use crate::error::CliError;
use crate::picture::{LocalImage, has_image_extension};
use crate::submit::Submitter;
use crate::table::{SummaryRow, summary_table};

pub async fn run(client: ApiClient, args: SubmitDirArgs) -> Result<(), CliError> {
    let base = args
        .base_url
        .as_deref()
        .map(crate::batch::base_url)
        .transpose()?;
    let files = list_images(&args.dir)?;
    if let Some(dir) = &args.overlay_dir {
        std::fs::create_dir_all(dir).map_err(|source| CliError::WriteFile {
            path: dir.clone(),
            source,
        })?;
    }
    let outcomes = match base {
        Some(base) => super::submit_batches::run(&client, &args, &base, files).await,
        None => one_by_one(client, &args, files).await,
    };
    report(outcomes, args.json)
}

/// Each file uploaded (or served locally) and waited for, `--parallel` at a time.
async fn one_by_one(client: ApiClient, args: &SubmitDirArgs, files: Vec<PathBuf>) -> Vec<Outcome> {
    let submitter = Submitter::new(client, args.job.clone());
    let bar = progress_bar(files.len());
    let outcomes = futures::stream::iter(files)
        .map(|path| {
            let submitter = &submitter;
            let bar = &bar;
            let overlay_dir = args.overlay_dir.as_deref();
            async move {
                let started = Instant::now();
                let result = one(submitter, &path, overlay_dir).await;
                bar.inc(1);
                bar.set_message(display_name(&path));
                let result = result.map_err(|e| e.to_string());
                (path, result, started.elapsed().as_secs_f64())
            }
        })
        .buffer_unordered(usize::from(args.parallel))
        .collect()
        .await;
    bar.finish_and_clear();
    outcomes
}

/// Prints the summary (a table, or a JSON object per file), sorted by file; fails when
/// any file did not succeed.
fn report(mut outcomes: Vec<Outcome>, json: bool) -> Result<(), CliError> {
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    let total = outcomes.len();
    let mut failed = 0;
    let mut rows = Vec::with_capacity(total);
    for (path, result, elapsed) in outcomes {
        let row = summary_row(&path, result, elapsed);
        if row.status != Status::Success.label() {
            failed += 1;
        }
        rows.push((row, path));
    }
    if json {
        for (row, path) in &rows {
            let line = serde_json::json!({
                "file": path.display().to_string(),
                "job_id": row.job_id,
                "status": row.status,
                "items": row.items,
                "message": row.note,
            });
            println!("{line}");
        }
    } else {
        let rows: Vec<SummaryRow> = rows.into_iter().map(|(r, _)| r).collect();
        print!("{}", summary_table(&rows));
        println!("{} of {total} succeeded", total - failed);
    }
    if failed > 0 {
        return Err(CliError::SomeFailed { failed, total });
    }
    Ok(())
}

/// The directory's image files, sorted by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let read_err = |source| CliError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_file() && has_image_extension(&path) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(CliError::EmptyDir {
            path: dir.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

async fn one(
    submitter: &Submitter,
    path: &Path,
    overlay_dir: Option<&Path>,
) -> Result<JobDocument, CliError> {
    let doc = submitter.submit_file(LocalImage::read(path)?).await?;
    let doc = submitter.wait(doc, |_| {}).await?;
    if let Some(dir) = overlay_dir {
        write_overlay_for(submitter.client(), &doc, path, dir).await?;
    }
    Ok(doc)
}

fn summary_row(path: &Path, result: Result<JobDocument, String>, elapsed: f64) -> SummaryRow {
    let file = display_name(path);
    match result {
        Ok(doc) => {
            let items = doc.items();
            let status = doc.status();
            let (items, note) = match (status.clone(), items) {
                (Status::Success, Ok(items)) => (Some(items), String::new()),
                (_, Err(e)) => (None, e.to_string()),
                (_, Ok(_)) => (None, doc.message.clone()),
            };
            SummaryRow {
                file,
                job_id: doc.job_id,
                status: if note.is_empty() {
                    status.label().to_string()
                } else {
                    Status::Error.label().to_string()
                },
                items,
                seconds: doc.processing_time.or(Some(elapsed)),
                note,
            }
        }
        Err(note) => SummaryRow {
            file,
            job_id: "-".into(),
            status: Status::Error.label().into(),
            items: None,
            seconds: None,
            note,
        },
    }
}
