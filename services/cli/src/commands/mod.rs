//! One function per subcommand; each writes its results to stdout and returns an error
//! for the exit status.

mod dir_files;
mod eval;
mod json;
mod overlay;
mod reconcile;
mod status;
mod submit;
mod submit_batches;
mod submit_dir;

use crate::cli::{Cli, Command};
use crate::client::ApiClient;
use crate::error::CliError;

pub use overlay::{image_for, write_overlay};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let client = ApiClient::new(&cli.api)?.with_key(cli.api_key.clone());
    match cli.command {
        Command::Submit(args) => submit::run(client, args).await,
        Command::SubmitDir(args) => submit_dir::run(client, args).await,
        Command::Status(args) => status::run(client, args).await,
        Command::Overlay(args) => overlay::run(client, args).await,
        Command::Reconcile(args) => reconcile::run(client, args).await,
        Command::Eval(args) => eval::run(client, args).await,
    }
}
