//! The `foodseg-api` binary: telemetry, configuration, signals; the service is in the lib.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    foodseg_runtime::run_service(
        "foodseg-api",
        foodseg_api::Config::from_env,
        foodseg_api::run,
    )
    .await
}
