//! A tiny HTTP file server on loopback, for fixture images.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

/// Serves the files under one directory at `http://127.0.0.1:<port>/<relative path>`
/// (`404` for anything else) until dropped.
#[derive(Debug)]
pub struct FileServer {
    pub base_url: String,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

struct ServeDir(PathBuf);

#[async_trait]
impl Handler for ServeDir {
    async fn handle(
        &self,
        req: &mut Request,
        _depot: &mut Depot,
        res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        let rel = req.uri().path().trim_start_matches('/').to_string();
        let rel = Path::new(&rel);
        let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
        let path = self.0.join(rel);
        match (safe, tokio::fs::read(&path).await) {
            (true, Ok(bytes)) => {
                let mime = match path.extension().and_then(|e| e.to_str()) {
                    Some("jpg" | "jpeg") => "image/jpeg",
                    Some("png") => "image/png",
                    Some("webp") => "image/webp",
                    Some("json") => "application/json",
                    _ => "application/octet-stream",
                };
                let _ = res.add_header("content-type", mime, true);
                let _ = res.write_body(bytes);
            }
            _ => {
                res.status_code(StatusCode::NOT_FOUND);
            }
        }
    }
}

impl FileServer {
    /// Starts serving `dir` on `127.0.0.1:0`.
    pub async fn serve_dir(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let router = Router::with_path("{**rest}").get(ServeDir(dir.into()));
        let (addr, shutdown) = crate::serve_router(router).await?;
        Ok(FileServer {
            base_url: format!("http://{addr}"),
            addr,
            shutdown,
        })
    }

    /// The URL of `name` (a path relative to the served directory).
    pub fn url(&self, name: &str) -> String {
        format!("{}/{}", self.base_url, name.trim_start_matches('/'))
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
