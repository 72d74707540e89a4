//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::batch::Priority;

const ABOUT: &str = "Client for the foodseg food-segmentation service.";

const LONG_ABOUT: &str = "\
Client for the foodseg food-segmentation service: submit images, wait for their results, \
print what was found and draw it onto the picture.

Local files are sent to the API's upload endpoint (POST /v2/uploads) when its OpenAPI \
document lists one. Otherwise the CLI serves the file itself from a short-lived HTTP server on 127.0.0.1 (a free \
port) and submits that URL: this needs the API and worker on this machine and \
FOODSEG_URL_ALLOW_CIDRS=127.0.0.0/8 in their environment.

Exit status: 0 when every job succeeded, 1 otherwise (bad input, API errors, failed or \
timed-out jobs).";

#[derive(Debug, Parser)]
#[command(name = "foodseg", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Base URL of the foodseg API.
    #[arg(
        long,
        env = "FOODSEG_API_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub api: String,

    /// An API key for servers that require one on `/v2` (`foodseg-api keys create
    /// --scope submit`).
    #[arg(long, env = "FOODSEG_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit one image (a local file or an http(s) URL), wait, and print its items.
    ///
    /// A local file goes to the API's upload endpoint (POST /v2/uploads) when it exists;
    /// otherwise the CLI serves it from a short-lived HTTP server on 127.0.0.1 and submits
    /// that URL, which needs the API and worker on this machine with
    /// FOODSEG_URL_ALLOW_CIDRS=127.0.0.0/8.
    Submit(SubmitArgs),
    /// Submit every image in a directory and print a summary.
    ///
    /// Files are uploaded or served locally as for `submit` (the local fallback needs
    /// FOODSEG_URL_ALLOW_CIDRS=127.0.0.0/8 on the API and worker). With --base-url, where
    /// the images are already served, nothing is uploaded: the jobs go in batches of up
    /// to 1,000 (POST /v2/jobs), bulk by default, and sending the directory again is safe.
    SubmitDir(SubmitDirArgs),
    /// Print a job's current status and items.
    Status(StatusArgs),
    /// Draw a finished job's items onto its image and write a PNG.
    Overlay(OverlayArgs),
    /// List finished jobs whose webhook is still pending or failed (needs an API key with
    /// scope `operator`).
    ///
    /// Exit status 0 when every webhook since then was delivered, 1 otherwise.
    Reconcile(ReconcileArgs),
    /// Evaluate a model on annotated photos with the standard COCO metrics.
    ///
    /// Submits every image of a COCO instances file, writes the items found as COCO
    /// results (OUT/detections.json) and the box and mask metrics (OUT/metrics.json),
    /// and prints them; with --compare, also the change against an earlier run. Items
    /// are matched to the file's categories by name; others are counted and left out.
    Eval(EvalArgs),
}

/// Options shared by the submitting commands.
#[derive(Debug, Clone, Args)]
pub struct JobOptions {
    /// Model id or alias (e.g. 124096); the API's default model when omitted.
    #[arg(long)]
    pub model: Option<String>,

    /// Webhook URL the service should post the result to.
    #[arg(long)]
    pub webhook: Option<String>,

    /// Seconds to wait for each job to finish (`submit-dir --base-url`: for all of them).
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Image file path or http(s) URL.
    pub target: String,

    #[command(flatten)]
    pub job: JobOptions,

    /// Print the final job document as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also draw the result onto the image and write it to this PNG.
    #[arg(long, value_name = "PNG")]
    pub overlay: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SubmitDirArgs {
    /// Directory whose .jpg, .jpeg, .png and .webp files are submitted (not recursive).
    pub dir: PathBuf,

    #[command(flatten)]
    pub job: JobOptions,

    /// Jobs in flight at once (with --base-url: status requests at once).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Where the directory's images are already served over http(s): each file's URL is
    /// this URL joined with its file name, and nothing is uploaded. The jobs are sent in
    /// batches of up to 1,000 (POST /v2/jobs), each with an idempotency key made from its
    /// URL, model and webhook, so sending the directory again replays the same jobs; a
    /// progress bar follows the batches (GET /v2/batches/{id}, which needs an API key).
    /// --timeout then bounds the whole run.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// The batches' priority (with --base-url; default bulk).
    #[arg(long, value_enum, requires = "base_url")]
    pub priority: Option<Priority>,

    /// Write an overlay PNG per successful image into this directory.
    #[arg(long, value_name = "DIR")]
    pub overlay_dir: Option<PathBuf>,

    /// Print one JSON object per image instead of the summary table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// COCO instances file: images, categories and annotations of the photos.
    #[arg(long, value_name = "JSON")]
    pub annotations: PathBuf,

    /// Directory holding the photos (each image's file_name is relative to it).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,

    /// Model id or alias; the API's default model when omitted.
    #[arg(long)]
    pub model: Option<String>,

    /// Jobs in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Seconds to wait for each job to finish.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,

    /// Directory for detections.json and metrics.json (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The output directory of an earlier run to compare with.
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub job_id: String,

    /// Print the job document as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OverlayArgs {
    pub job_id: String,

    /// The job's image as a local file (default: download the job's image_url).
    #[arg(long)]
    pub image: Option<PathBuf>,

    /// Output PNG path.
    #[arg(short, long, value_name = "PNG")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// How far back to look, e.g. `24h`, `7d`, `90m`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: std::time::Duration,

    /// Print one JSON object per webhook instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_submit_with_options() {
        let cli = Cli::try_parse_from([
            "foodseg",
            "--api",
            "http://h:1",
            "submit",
            "a.jpg",
            "--model",
            "124096",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.api, "http://h:1");
        let Command::Submit(args) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(args.target, "a.jpg");
        assert_eq!(args.job.model.as_deref(), Some("124096"));
        assert_eq!(args.job.timeout, 120);
        assert!(args.json);
    }

    #[test]
    fn parses_eval() {
        let cli = Cli::try_parse_from([
            "foodseg",
            "eval",
            "--annotations",
            "gt.json",
            "--images",
            "photos",
            "--out",
            "run",
            "--compare",
            "old",
            "--concurrency",
            "2",
        ])
        .unwrap();
        let Command::Eval(args) = cli.command else {
            panic!("not eval")
        };
        assert_eq!(args.annotations, PathBuf::from("gt.json"));
        assert_eq!(args.compare, Some(PathBuf::from("old")));
        assert_eq!(args.concurrency, 2);
        assert!(Cli::try_parse_from(["foodseg", "eval", "--annotations", "gt.json"]).is_err());
    }

    #[test]
    fn parses_submit_dir_with_a_base_url() {
        let cli = Cli::try_parse_from([
            "foodseg",
            "submit-dir",
            "photos",
            "--base-url",
            "https://img.example.org/meals/",
            "--priority",
            "interactive",
            "--timeout",
            "3600",
        ])
        .unwrap();
        let Command::SubmitDir(args) = cli.command else {
            panic!("not submit-dir")
        };
        assert_eq!(
            args.base_url.as_deref(),
            Some("https://img.example.org/meals/")
        );
        assert_eq!(args.priority, Some(Priority::Interactive));
        assert_eq!(args.job.timeout, 3600);
        // A priority means nothing without batches.
        assert!(
            Cli::try_parse_from(["foodseg", "submit-dir", "photos", "--priority", "bulk"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "foodseg",
                "submit-dir",
                "photos",
                "--base-url",
                "https://h/",
                "--priority",
                "urgent"
            ])
            .is_err()
        );
    }

    #[test]
    fn overlay_needs_an_output() {
        assert!(Cli::try_parse_from(["foodseg", "overlay", "id"]).is_err());
        assert!(Cli::try_parse_from(["foodseg", "overlay", "id", "-o", "x.png"]).is_ok());
    }
}
