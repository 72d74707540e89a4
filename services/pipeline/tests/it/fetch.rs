//! Image downloads against a local HTTP server.

use std::time::Duration;

use foodseg_pipeline::fetch::{client, fetch};
use foodseg_pipeline::{FetchError, FetchLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves canned responses by path until the test ends.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let response: Vec<u8> = match path.as_str() {
                    "/ok.jpg" => {
                        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".to_vec();
                        r.extend_from_slice(b"\xFF\xD8\xFF\xD9\x00");
                        r
                    }
                    "/missing.jpg" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    "/busy.jpg" => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    "/redirect.jpg" => b"HTTP/1.1 302 Found\r\nLocation: /ok.jpg\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    "/loop.jpg" => b"HTTP/1.1 302 Found\r\nLocation: /loop.jpg\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    "/declared-big.jpg" => b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n".to_vec(),
                    "/streamed-big.jpg" => {
                        // No Content-Length: the body runs until the connection closes.
                        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                        r.extend(std::iter::repeat_n(0u8, 3 * 1024 * 1024));
                        r
                    }
                    "/stall.jpg" => {
                        // Headers promise a body that never comes.
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
                        let _ = socket.read(&mut buf).await;
                        return;
                    }
                    _ => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn get(
    base: &str,
    path: &str,
    limits: FetchLimits,
) -> Result<foodseg_pipeline::Fetched, FetchError> {
    let client = client(Duration::from_secs(2), Duration::from_secs(10)).expect("client");
    let url = url::Url::parse(&format!("{base}{path}")).expect("url");
    fetch(&client, &url, &limits).await
}

#[tokio::test]
async fn success_redirect_and_status_classification() {
    let base = serve().await;
    let limits = FetchLimits::default();

    let ok = get(&base, "/ok.jpg", limits).await.expect("ok");
    assert_eq!(&ok.bytes[..], b"\xFF\xD8\xFF\xD9\x00");
    assert_eq!(ok.content_type.as_deref(), Some("image/jpeg"));

    let redirected = get(&base, "/redirect.jpg", limits).await.expect("redirect");
    assert_eq!(redirected.final_url.path(), "/ok.jpg");

    let err = get(&base, "/missing.jpg", limits).await.expect_err("404");
    assert_eq!(err.to_string(), "image_url returned HTTP 404");
    assert!(err.is_permanent());

    let err = get(&base, "/busy.jpg", limits).await.expect_err("503");
    assert!(!err.is_permanent(), "{err}");

    let err = get(&base, "/loop.jpg", limits)
        .await
        .expect_err("redirect loop");
    assert!(err.is_permanent(), "{err}");
}

#[tokio::test]
async fn size_cap_is_enforced_declared_or_streamed() {
    let base = serve().await;
    let limits = FetchLimits {
        max_bytes: 1024 * 1024,
        ..FetchLimits::default()
    };
    for path in ["/declared-big.jpg", "/streamed-big.jpg"] {
        let err = get(&base, path, limits).await.expect_err("too large");
        assert_eq!(err.to_string(), "image is larger than 1 MB", "{path}");
        assert!(err.is_permanent());
    }
}

#[tokio::test]
async fn stalled_body_times_out_as_transient() {
    let base = serve().await;
    let limits = FetchLimits {
        total_timeout: Duration::from_millis(300),
        ..FetchLimits::default()
    };
    let err = get(&base, "/stall.jpg", limits).await.expect_err("timeout");
    assert!(matches!(err, FetchError::Timeout), "{err:?}");
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = get(&format!("http://{addr}"), "/x.jpg", FetchLimits::default())
        .await
        .expect_err("refused");
    assert!(!err.is_permanent(), "{err:?}");
}
