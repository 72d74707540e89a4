//! The `foodseg` command-line client. It talks to the API like any other client (the v1
//! contract: `POST /enqueue`, `GET /status/{job_id}`, plus the upload endpoint when the
//! server has it, and v2 batches): `submit` an image file or URL and wait for the result,
//! `submit-dir` for a whole folder (uploaded, or already served and sent in batches),
//! `status` of a job, `overlay` to draw a job's masks, boxes and labels onto its picture,
//! and `eval` to score a model on annotated photos with the standard COCO metrics.

pub mod backoff;
pub mod batch;
pub mod cli;
pub mod client;
pub mod commands;
pub mod document;
pub mod error;
pub mod eval;
pub mod local_server;
pub mod picture;
pub mod render;
pub mod submit;
pub mod table;

pub use cli::Cli;
pub use commands::run;
pub use error::CliError;
