//! The `foodseg-scheduler` binary: its command line (`--help`, `--version`,
//! nothing else), telemetry, configuration, signals; the service is in the lib.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    foodseg_runtime::parse_service_args(
        "foodseg-scheduler",
        "foodseg's scheduler: delivers webhooks with retries, re-drives jobs whose worker was lost, republishes lost dispatch messages, and runs retention and the daily reconciliation.",
    );
    foodseg_runtime::run_service(
        "foodseg-scheduler",
        foodseg_scheduler::Config::from_env,
        foodseg_scheduler::run,
    )
    .await
}
