//! The `foodseg-worker` binary's command line: `--help` and `--version` answer and exit, an
//! unknown argument is refused; none of them starts the service.

use std::process::Stdio;

async fn run(arg: &str) -> anyhow::Result<std::process::Output> {
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_foodseg-worker"))
            .arg(arg)
            // Nothing to reach: a binary that started the service would fail differently.
            .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?,
    )
}

#[tokio::test]
async fn help_and_version_answer_and_unknown_arguments_are_refused() -> anyhow::Result<()> {
    let help = run("--help").await?;
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8(help.stdout)?;
    assert!(text.contains("Usage: foodseg-worker"), "{text}");
    assert!(text.contains("FOODSEG_"), "{text}");

    let version = run("--version").await?;
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8(version.stdout)?.trim(),
        format!("foodseg-worker {}", env!("CARGO_PKG_VERSION"))
    );

    let unknown = run("--bogus").await?;
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(String::from_utf8(unknown.stderr)?.contains("unexpected argument '--bogus'"));
    Ok(())
}
