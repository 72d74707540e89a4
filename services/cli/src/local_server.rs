//! A short-lived HTTP server on 127.0.0.1 that hands local image files to the worker when
//! the API has no upload endpoint. Each file gets an unguessable URL that keeps the file's
//! name as its last path segment (the job's `image_id` is that name).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use salvo::conn::tcp::TcpAcceptor;
use salvo::http::header::CONTENT_TYPE;
use salvo::prelude::*;
use salvo::server::ServerHandle;
use url::Url;

use crate::error::CliError;

#[derive(Debug, Clone)]
struct Hosted {
    path: PathBuf,
    content_type: &'static str,
}

type Files = Arc<Mutex<HashMap<String, Hosted>>>;

/// Serves registered files until dropped.
pub struct LocalServer {
    base: Url,
    files: Files,
    handle: ServerHandle,
}

impl LocalServer {
    /// Binds a free port on 127.0.0.1 and starts serving in the background.
    pub async fn start() -> Result<Self, CliError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(CliError::LocalServer)?;
        let addr: SocketAddr = listener.local_addr().map_err(CliError::LocalServer)?;
        let base = Url::parse(&format!("http://{addr}/"))
            .map_err(|e| CliError::LocalServer(std::io::Error::other(e)))?;
        let acceptor = TcpAcceptor::try_from(listener).map_err(CliError::LocalServer)?;
        let files: Files = Arc::default();
        let router = Router::with_path("files/{token}/{name}").get(ServeFile {
            files: files.clone(),
        });
        let server = Server::new(acceptor);
        let handle = server.handle();
        tokio::spawn(async move {
            // Serving ends when the handle stops it; an I/O failure only means the worker
            // cannot fetch the image, which the job then reports.
            let _ = server.try_serve(router).await;
        });
        Ok(Self {
            base,
            files,
            handle,
        })
    }

    /// Registers a file and returns the URL it is served at.
    pub fn host(&self, path: PathBuf, content_type: &'static str) -> Url {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push("files")
                .push(&token)
                .push(&name);
        }
        if let Ok(mut files) = self.files.lock() {
            files.insert(token, Hosted { path, content_type });
        }
        url
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.handle.stop_forceful();
    }
}

struct ServeFile {
    files: Files,
}

#[handler]
impl ServeFile {
    async fn handle(&self, req: &mut Request, res: &mut Response) {
        let token: Option<String> = req.param("token");
        let hosted = token.and_then(|t| {
            self.files
                .lock()
                .ok()
                .and_then(|files| files.get(&t).cloned())
        });
        let Some(hosted) = hosted else {
            res.status_code(StatusCode::NOT_FOUND);
            return;
        };
        match tokio::fs::read(&hosted.path).await {
            Ok(bytes) => {
                let _ = res.add_header(CONTENT_TYPE, hosted.content_type, true);
                res.body(bytes);
            }
            Err(_) => {
                res.status_code(StatusCode::NOT_FOUND);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_registered_files_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("foodseg-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("my photo.jpg");
        std::fs::write(&path, b"\xff\xd8\xffbytes").unwrap();

        let server = LocalServer::start().await.unwrap();
        let url = server.host(path, "image/jpeg");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert!(url.path().ends_with("/my%20photo.jpg"), "{url}");

        let http = foodseg_http::client().unwrap();
        let res = http.get(url.clone()).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[CONTENT_TYPE.as_str()], "image/jpeg");
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"\xff\xd8\xffbytes");

        let mut other = url.clone();
        other.set_path("/files/0000/my%20photo.jpg");
        assert_eq!(http.get(other).send().await.unwrap().status(), 404);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
