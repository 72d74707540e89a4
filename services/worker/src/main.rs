//! The `foodseg-worker` binary: its command line (`--help`, `--version`, and the
//! `models import` command, [`foodseg_worker::import`]; nothing else), telemetry,
//! configuration, signals; the service is in the lib.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if foodseg_worker::import::is_models_command(&args) {
        std::process::exit(foodseg_worker::import::main(args));
    }
    foodseg_runtime::parse_service_args(
        "foodseg-worker",
        "foodseg's worker: pulls segmentation jobs from NATS, claims them in Postgres, fetches and segments the images with ONNX Runtime, and writes the results. `foodseg-worker models import FILE.onnx --name NAME` imports an exported model instead (`foodseg-worker models --help`).",
    );
    foodseg_runtime::run_service(
        "foodseg-worker",
        foodseg_worker::Config::from_env,
        foodseg_worker::run,
    )
    .await
}
