//! The `foodseg-worker` binary: its command line (`--help`, `--version`,
//! nothing else), telemetry, configuration, signals; the service is in the lib.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    foodseg_runtime::parse_service_args(
        "foodseg-worker",
        "foodseg's worker: pulls segmentation jobs from NATS, claims them in Postgres, fetches and segments the images with ONNX Runtime, and writes the results.",
    );
    foodseg_runtime::run_service(
        "foodseg-worker",
        foodseg_worker::Config::from_env,
        foodseg_worker::run,
    )
    .await
}
