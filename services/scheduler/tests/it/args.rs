//! The `foodseg-scheduler` binary's command line: `--help` and `--version` answer and exit, an
//! unknown argument is refused; none of them starts the service.

#[tokio::test]
async fn help_and_version_answer_and_unknown_arguments_are_refused() -> anyhow::Result<()> {
    foodseg_testkit::check_service_command_line(
        std::path::Path::new(env!("CARGO_BIN_EXE_foodseg-scheduler")),
        "foodseg-scheduler",
        env!("CARGO_PKG_VERSION"),
    )
    .await
}
