//! A service binary's command line, as every one must answer it.

use std::path::Path;
use std::process::{Output, Stdio};

async fn run(binary: &Path, arg: &str) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(binary)
        .arg(arg)
        // Nothing to reach: a binary that started the service would fail differently.
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?)
}

/// `binary --help` prints its usage and the configuration it reads, `--version` its
/// `name` and `version`, and an unknown argument is refused with exit code 2; none of
/// them starts the service.
pub async fn check_service_command_line(
    binary: &Path,
    name: &str,
    version: &str,
) -> anyhow::Result<()> {
    let help = run(binary, "--help").await?;
    anyhow::ensure!(help.status.success(), "--help: {help:?}");
    let text = String::from_utf8(help.stdout)?;
    anyhow::ensure!(text.contains(&format!("Usage: {name}")), "{text}");
    anyhow::ensure!(text.contains("FOODSEG_"), "{text}");

    let answered = run(binary, "--version").await?;
    anyhow::ensure!(answered.status.success(), "--version: {answered:?}");
    let said = String::from_utf8(answered.stdout)?;
    anyhow::ensure!(said.trim() == format!("{name} {version}"), "{said}");

    let unknown = run(binary, "--bogus").await?;
    anyhow::ensure!(unknown.status.code() == Some(2), "--bogus: {unknown:?}");
    let said = String::from_utf8(unknown.stderr)?;
    anyhow::ensure!(said.contains("unexpected argument '--bogus'"), "{said}");
    Ok(())
}
