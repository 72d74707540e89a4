//! `foodseg submit <file-or-url>`: submit, wait with a spinner, print the items.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::SubmitArgs;
use crate::client::ApiClient;
use crate::document::Status;
use crate::error::CliError;
use crate::submit::{Submitter, Target};
use crate::table::{items_table, job_header};

pub async fn run(client: ApiClient, args: SubmitArgs) -> Result<(), CliError> {
    let target = Target::parse(&args.target);
    let submitter = Submitter::new(client, args.job.clone());

    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner.set_message(format!("submitting {}", args.target));

    let result = async {
        let doc = submitter.submit(&target).await?;
        submitter
            .wait(doc, |d| {
                spinner.set_message(format!("job {} {}", d.job_id, d.status().label()))
            })
            .await
    }
    .await;
    spinner.finish_and_clear();
    let doc = result?;

    let items = doc.items()?;
    if args.json {
        println!("{}", super::json::to_json(&doc));
    } else {
        println!("{}", job_header(&doc, items.len()));
        if !items.is_empty() {
            print!("{}", items_table(&items));
        }
    }
    if doc.status() == Status::Error {
        return Err(CliError::JobFailed {
            job_id: doc.job_id,
            message: doc.message,
        });
    }
    if let Some(out) = &args.overlay {
        let image = super::overlay::image_for(submitter.client(), &doc, file_of(&target)).await?;
        super::overlay::write_overlay(&image, &items, out)?;
        eprintln!("overlay written to {}", out.display());
    }
    Ok(())
}

fn file_of(target: &Target) -> Option<&std::path::Path> {
    match target {
        Target::File(p) => Some(p),
        Target::Url(_) => None,
    }
}
