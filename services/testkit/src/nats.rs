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

/// One node of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    store_dir: PathBuf,
    child: Option<tokio::process::Child>,
}

/// A throwaway JetStream cluster of `nats-server` processes on loopback, each with its
/// own client port, route port and store directory, routed to every other node. Nodes
/// can be killed (SIGKILL) one by one; every node is killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    root: PathBuf,
}

impl NatsCluster {
    /// Starts `size` nodes (named `n1`, `n2`, …) and waits, until `deadline`, until
    /// JetStream has a meta leader and can place a stream on every node.
    pub async fn start(size: usize, deadline: std::time::Duration) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!(
            "foodseg-nats-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut nodes = Vec::with_capacity(size);
        for i in 1..=size {
            let store_dir = root.join(format!("n{i}"));
            std::fs::create_dir_all(&store_dir)?;
            nodes.push(Node {
                name: format!("n{i}"),
                port: free_port()?,
                cluster_port: free_port()?,
                store_dir,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, root };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.wait_until_ready(deadline).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &mut self.nodes[i];
        let child = tokio::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-js", "-p"])
            .arg(node.port.to_string())
            .arg("-sd")
            .arg(&node.store_dir)
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", node.cluster_port))
            .arg("--routes")
            .arg(routes)
            .args(["--cluster_name", "foodseg-test", "-n"])
            .arg(&node.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start nats-server (is it installed?): {e}"))?;
        node.child = Some(child);
        Ok(())
    }

    /// Every node's client URL, comma-separated (a `NATS_URL` for the whole cluster).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node names (`n1`, …), as JetStream reports them in cluster information.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Waits until JetStream answers account requests on the cluster, which it does
    /// only once the nodes have elected a meta leader, and then until a stream with one
    /// replica per node can be created: the meta leader places replicas only on the peers
    /// it has heard from, which may lag behind its election.
    pub async fn wait_until_ready(&self, deadline: std::time::Duration) -> anyhow::Result<()> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(
                self.nodes
                    .iter()
                    .map(|n| format!("nats://127.0.0.1:{}", n.port))
                    .collect::<Vec<_>>(),
            )
            .await?;
        // `$JS.API.INFO` answers with an error (503, no meta leader) until there is one.
        crate::wait_until(deadline, || async {
            match client.request("$JS.API.INFO", "".into()).await {
                Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
                    .is_ok_and(|v| v.get("error").is_none()),
                Err(_) => false,
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("the NATS cluster has no JetStream meta leader: {e}"))?;
        let jetstream = async_nats::jetstream::new(client);
        let size = self.nodes.len();
        let probe = async_nats::jetstream::stream::Config {
            name: "FOODSEG_CLUSTER_READY".into(),
            subjects: vec!["foodseg.cluster.ready".into()],
            num_replicas: size,
            ..Default::default()
        };
        crate::wait_until(deadline, || async {
            // A create that timed out may still have made the stream: ready once it
            // exists with a replica on every node.
            match jetstream.get_or_create_stream(probe.clone()).await {
                Ok(mut stream) => stream.info().await.is_ok_and(|info| {
                    info.cluster
                        .as_ref()
                        .is_some_and(|c| c.leader.is_some() && c.replicas.len() + 1 == size)
                }),
                Err(e) => {
                    eprintln!("NATS cluster not ready yet: {e}");
                    false
                }
            }
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!("the NATS cluster cannot place a stream on all {size} nodes: {e}")
        })?;
        jetstream.delete_stream(&probe.name).await?;
        Ok(())
    }

    /// Kills the node named `name` with SIGKILL and waits for it to exit.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow::anyhow!("no node {name}"))?;
        if let Some(mut child) = node.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
