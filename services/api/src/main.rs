//! The `foodseg-api` binary: the service (telemetry, configuration, signals; the service
//! is in the lib), or `foodseg-api keys …` to manage API keys.

use clap::Parser;

/// foodseg's HTTP api. Without a command it serves; `keys` manages API keys.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the api (the default).
    Serve,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(foodseg_api::keys_command::KeysCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        None | Some(Command::Serve) => {
            foodseg_runtime::run_service(
                "foodseg-api",
                foodseg_api::Config::from_env,
                foodseg_api::run,
            )
            .await
        }
        Some(Command::Keys(command)) => {
            let config = foodseg_api::Config::from_env()?;
            foodseg_api::keys_command::run(&config, command, &mut std::io::stdout())
                .await
                .map_err(|e| anyhow::anyhow!(foodseg_engine::error_chain(&e)))
        }
    }
}
