//! `foodseg eval`: the photos of a COCO instances file through the service, the items
//! found as COCO results, and the standard box and mask metrics (optionally against an
//! earlier run).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{EvalArgs, JobOptions};
use crate::client::ApiClient;
use crate::document::{Item, Status};
use crate::error::CliError;
use crate::eval::from_items::{Converted, add_items};
use crate::eval::report::MetricsFile;
use crate::eval::{Dataset, Image, IouType, evaluate};
use crate::picture::LocalImage;
use crate::submit::Submitter;

/// File names inside the output directory.
pub const DETECTIONS_FILE: &str = "detections.json";
pub const METRICS_FILE: &str = "metrics.json";

pub async fn run(client: ApiClient, args: EvalArgs) -> Result<(), CliError> {
    let dataset = read_dataset(&args.annotations)?;
    // An unreadable comparison fails before the long run, not after it.
    let other = match &args.compare {
        Some(dir) => Some(read_metrics(&dir.join(METRICS_FILE))?),
        None => None,
    };
    std::fs::create_dir_all(&args.out).map_err(|source| CliError::WriteFile {
        path: args.out.clone(),
        source,
    })?;

    let submitter = Submitter::new(
        client,
        JobOptions {
            model: args.model.clone(),
            webhook: None,
            timeout: args.timeout,
        },
    );
    let bar = ProgressBar::new(dataset.images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut outcomes: Vec<(&Image, Result<Vec<Item>, CliError>)> =
        futures::stream::iter(&dataset.images)
            .map(|image| {
                let (submitter, bar) = (&submitter, &bar);
                let path = args.images.join(&image.file_name);
                async move {
                    let result = items_of(submitter, &path).await;
                    bar.inc(1);
                    bar.set_message(image.file_name.clone());
                    (image, result)
                }
            })
            .buffer_unordered(usize::from(args.concurrency))
            .collect()
            .await;
    bar.finish_and_clear();
    outcomes.sort_by_key(|o| o.0.id);

    let mut converted = Converted::default();
    let mut failures = Vec::new();
    for (image, result) in outcomes {
        match result {
            Ok(items) => add_items(&dataset, image, &items, &mut converted),
            Err(e) => failures.push(format!("{}: {e}", image.file_name)),
        }
    }
    let evaluation_error = |source| CliError::Evaluation {
        path: args.annotations.clone(),
        source,
    };
    let bbox =
        evaluate(&dataset, &converted.detections, IouType::Bbox).map_err(evaluation_error)?;
    let segm =
        evaluate(&dataset, &converted.detections, IouType::Segm).map_err(evaluation_error)?;
    let metrics = MetricsFile::new(&bbox, &segm);
    write_json(&args.out.join(DETECTIONS_FILE), &converted.detections)?;
    write_json(&args.out.join(METRICS_FILE), &metrics)?;

    let total = dataset.images.len();
    println!(
        "{} of {total} images evaluated, {} detections",
        total - failures.len(),
        converted.detections.len()
    );
    print!("{}", metrics.table());
    if !converted.unknown.is_empty() {
        let names: Vec<String> = converted
            .unknown
            .iter()
            .map(|(name, n)| format!("{name} ({n})"))
            .collect();
        let left_out: usize = converted.unknown.values().sum();
        println!(
            "{left_out} {} left out, their category is not in the annotation file: {}",
            if left_out == 1 { "item" } else { "items" },
            names.join(", ")
        );
    }
    if !converted.other_size.is_empty() {
        println!(
            "warning: the annotation file's width and height differ from the photo for {}; \
             their boxes and masks cannot line up",
            converted.other_size.join(", ")
        );
    }
    if let (Some(other), Some(dir)) = (&other, &args.compare) {
        println!("\nchange against {}:", dir.display());
        print!("{}", metrics.comparison(other));
    }
    println!(
        "wrote {} and {}",
        args.out.join(DETECTIONS_FILE).display(),
        args.out.join(METRICS_FILE).display()
    );
    for failure in &failures {
        eprintln!("failed: {failure}");
    }
    if !failures.is_empty() {
        return Err(CliError::SomeFailed {
            failed: failures.len(),
            total,
        });
    }
    Ok(())
}

/// Submits one photo, waits, and returns its items (an error unless the job succeeded).
async fn items_of(submitter: &Submitter, path: &Path) -> Result<Vec<Item>, CliError> {
    let doc = submitter.submit_file(LocalImage::read(path)?).await?;
    let doc = submitter.wait(doc, |_| {}).await?;
    if doc.status() != Status::Success {
        return Err(CliError::JobFailed {
            job_id: doc.job_id,
            message: doc.message,
        });
    }
    doc.items()
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

fn read_dataset(path: &Path) -> Result<Dataset, CliError> {
    Dataset::from_json(&read_text(path)?).map_err(|source| CliError::Evaluation {
        path: path.to_path_buf(),
        source,
    })
}

fn read_metrics(path: &Path) -> Result<MetricsFile, CliError> {
    serde_json::from_str(&read_text(path)?).map_err(|source| CliError::BadMetrics {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json<T: serde::Serialize>(path: &PathBuf, value: &T) -> Result<(), CliError> {
    let text = super::json::to_json(value);
    std::fs::write(path, text + "\n").map_err(|source| CliError::WriteFile {
        path: path.clone(),
        source,
    })
}
