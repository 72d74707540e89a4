//! A throwaway PostgreSQL server, to stop and start in outage tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// A `postgres` child process on its own port and data directory (made by `initdb`, trust
/// authentication, user `postgres`), with a database `foodseg`. Stopped and removed on
/// drop.
#[derive(Debug)]
pub struct PostgresServer {
    pub port: u16,
    data_dir: PathBuf,
    child: Option<Child>,
}

impl PostgresServer {
    /// Creates the cluster and starts the server.
    pub async fn start() -> anyhow::Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("foodseg-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir)?;
        if is_root() {
            // initdb and postgres refuse to run as root.
            chown_postgres(&data_dir).await?;
        }
        let out = as_postgres(&bin("initdb")?)
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data_dir)
            .output()
            .await
            .context("cannot run initdb")?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = PostgresServer {
            port: crate::free_port()?,
            data_dir,
            child: None,
        };
        server.resume().await?;
        let out = Command::new(bin("psql")?)
            .arg(server.url("postgres"))
            .args(["-qc", "CREATE DATABASE foodseg"])
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "cannot create the database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(server)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server again (same port and data) and waits until it accepts queries.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "the server is running");
        let child = as_postgres(&bin("postgres")?)
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start postgres")?;
        self.child = Some(child);
        let url = self.url("postgres");
        crate::wait_until(Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                let psql = bin("psql").ok()?;
                let out = Command::new(psql)
                    .arg(url)
                    .args(["-tAc", "SELECT 1"])
                    .output()
                    .await
                    .ok()?;
                out.status.success().then_some(())
            }
        })
        .await
        .context("postgres did not come up")
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`: every connection cut, as
    /// in a crash) and waits for it to exit.
    pub async fn halt(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let out = as_postgres(&bin("pg_ctl")?)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data_dir)
            .output()
            .await?;
        if !out.status.success() {
            child.start_kill()?;
        }
        child.wait().await?;
        Ok(())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGKILL leaves shared memory behind; SIGQUIT is postgres' immediate stop.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-QUIT", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
}

/// The command, run as the `postgres` user when this process is root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

async fn chown_postgres(dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "cannot chown {}", dir.display());
    Ok(())
}

/// A PostgreSQL program from `PATH` or Debian's `/usr/lib/postgresql/<version>/bin`.
fn bin(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }) {
        return Ok(found);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("PostgreSQL's {name} is not installed"))
}
