//! A throwaway `nats-server` with JetStream, to stop and restart in outage tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A `nats-server -js` child process on its own port and store directory. Killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    pub port: u16,
    store_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// A server that is not started yet (its URL refuses connections until
    /// [`NatsServer::start`]).
    pub fn new() -> anyhow::Result<Self> {
        let store_dir =
            std::env::temp_dir().join(format!("foodseg-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&store_dir)?;
        Ok(NatsServer {
            port: free_port()?,
            store_dir,
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the server on the same port and store, and waits until it
    /// accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start nats-server (is it installed?): {e}"))?;
        self.child = Some(child);
        let port = self.port;
        crate::wait_until(std::time::Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
    }

    /// Kills the server (if running) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}
