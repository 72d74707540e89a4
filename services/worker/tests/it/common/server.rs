//! A tiny HTTP/1.1 image host on 127.0.0.1 with the behaviours the worker must handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The real photos the pipeline's tests use.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A PNG whose header claims 40000 × 40000 pixels (a decompression bomb's shape).
pub fn huge_png() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&40000u32.to_be_bytes());
    ihdr.extend_from_slice(&40000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    for (kind, data) in [
        (&b"IDAT"[..], &[0x78u8, 0x9c, 0x63, 0, 0, 0, 1, 0, 1][..]),
        (b"IEND", &[]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    }
    png
}

/// Routes:
/// - `/img/<fixture>`: the fixture;
/// - `/flaky/<fixture>`: 503 for the first `flaky_failures` requests, then the fixture;
/// - `/stall-once/<fixture>`: the first request never gets an answer, later ones the fixture;
/// - `/gated/<fixture>`: the fixture, once the test opens the gate ([`ImageServer::open_gate`]);
/// - `/missing.jpg`: 404; `/page.html`: an HTML page; `/truncated.jpg`: half of fruits.jpg;
/// - `/huge.png`: a PNG claiming 40000×40000 px; `/redirect-private`: 302 to 10.0.0.1;
///   `/redirect-metadata`: 302 to 169.254.169.254.
pub struct ImageServer {
    pub base: String,
    pub flaky_hits: Arc<AtomicUsize>,
    pub stall_hits: Arc<AtomicUsize>,
    pub gate_hits: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The `/gated/` route's state.
#[derive(Clone)]
struct Gate {
    hits: Arc<AtomicUsize>,
    open: tokio::sync::watch::Receiver<bool>,
}

impl ImageServer {
    pub async fn start(flaky_failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind image server");
        let addr = listener.local_addr().expect("local addr");
        let flaky_hits = Arc::new(AtomicUsize::new(0));
        let stall_hits = Arc::new(AtomicUsize::new(0));
        let gate_hits = Arc::new(AtomicUsize::new(0));
        let (gate, open) = tokio::sync::watch::channel(false);
        let g = Gate {
            hits: gate_hits.clone(),
            open,
        };
        let (f, s) = (flaky_hits.clone(), stall_hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (f, s, g) = (f.clone(), s.clone(), g.clone());
                tokio::spawn(serve(conn, f, s, g, flaky_failures));
            }
        });
        ImageServer {
            base: format!("http://{addr}"),
            flaky_hits,
            stall_hits,
            gate_hits,
            gate,
            task,
        }
    }

    /// Lets the `/gated/` requests (waiting and future) have their answer.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut conn: TcpStream,
    flaky: Arc<AtomicUsize>,
    stall: Arc<AtomicUsize>,
    mut gate: Gate,
    flaky_failures: usize,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, ctype, body, extra): (&str, &str, Vec<u8>, String) =
        if let Some(name) = path.strip_prefix("/img/") {
            ("200 OK", content_type(name), fixture(name), String::new())
        } else if let Some(name) = path.strip_prefix("/flaky/") {
            if flaky.fetch_add(1, Ordering::SeqCst) < flaky_failures {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    b"busy".to_vec(),
                    String::new(),
                )
            } else {
                ("200 OK", content_type(name), fixture(name), String::new())
            }
        } else if let Some(name) = path.strip_prefix("/gated/") {
            gate.hits.fetch_add(1, Ordering::SeqCst);
            let _ = gate.open.wait_for(|open| *open).await;
            ("200 OK", content_type(name), fixture(name), String::new())
        } else if let Some(name) = path.strip_prefix("/stall-once/") {
            if stall.fetch_add(1, Ordering::SeqCst) == 0 {
                // Hold the connection open without answering.
                let _ = conn.read(&mut buf).await;
                std::future::pending::<()>().await;
            }
            ("200 OK", content_type(name), fixture(name), String::new())
        } else {
            match path.as_str() {
                "/page.html" => (
                    "200 OK",
                    "text/html; charset=utf-8",
                    b"<!doctype html><html><body>hello</body></html>".to_vec(),
                    String::new(),
                ),
                "/truncated.jpg" => {
                    let full = fixture("fruits.jpg");
                    (
                        "200 OK",
                        "image/jpeg",
                        full[..full.len() / 2].to_vec(),
                        String::new(),
                    )
                }
                "/huge.png" => ("200 OK", "image/png", huge_png(), String::new()),
                "/redirect-private" => (
                    "302 Found",
                    "text/plain",
                    Vec::new(),
                    "Location: http://10.0.0.1/fruits.jpg\r\n".into(),
                ),
                "/redirect-metadata" => (
                    "302 Found",
                    "text/plain",
                    Vec::new(),
                    "Location: http://169.254.169.254/latest/meta-data\r\n".into(),
                ),
                _ => (
                    "404 Not Found",
                    "text/plain",
                    b"not found".to_vec(),
                    String::new(),
                ),
            }
        };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.write_all(&body).await;
    let _ = conn.shutdown().await;
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    }
}
