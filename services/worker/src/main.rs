//! The `foodseg-worker` binary: telemetry, configuration, signals; the service is in the lib.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    foodseg_runtime::run_service(
        "foodseg-worker",
        foodseg_worker::Config::from_env,
        foodseg_worker::run,
    )
    .await
}
