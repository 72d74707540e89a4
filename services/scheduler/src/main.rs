//! The `foodseg-scheduler` binary: telemetry, configuration, signals; the service is in the lib.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    foodseg_runtime::run_service(
        "foodseg-scheduler",
        foodseg_scheduler::Config::from_env,
        foodseg_scheduler::run,
    )
    .await
}
