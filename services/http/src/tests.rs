//! Real TLS handshakes against a local HTTPS server whose self-signed certificate the
//! test trusts explicitly (nothing here needs the internet).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;

const BODY: &[u8] = b"fresh fruit";

/// An HTTPS server on loopback for `localhost`, answering every request with [`BODY`]
/// and the request's user agent in `x-seen-user-agent`, over HTTP/2 or HTTP/1.1 as the
/// client's ALPN offer allows.
struct TlsServer {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsServer {
    async fn start() -> anyhow::Result<Self> {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let cert = cert.der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], signing_key.into())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the connection here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let io = TokioIo::new(tls);
                    let service = service_fn(|request: hyper::Request<_>| {
                        let mut response =
                            hyper::Response::new(Full::new(Bytes::from_static(BODY)));
                        if let Some(agent) = request.headers().get("user-agent") {
                            response
                                .headers_mut()
                                .insert("x-seen-user-agent", agent.clone());
                        }
                        async { Ok::<_, Infallible>(response) }
                    });
                    let _ = if h2 {
                        http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        http1::Builder::new().serve_connection(io, service).await
                    };
                });
            }
        });
        Ok(TlsServer { addr, cert, task })
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Another self-signed certificate, which the server does not present.
fn unrelated_cert() -> CertificateDer<'static> {
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    other.cert.der().clone()
}

/// The rustls error somewhere in `error`'s causes (`io::Error`s wrap it on the way, and
/// an `io::Error` names its inner error as `get_ref`, not as its source).
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cause = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Whether the handshake failed because the server's certificate was not trusted.
fn certificate_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(tls_error(error), Some(rustls::Error::InvalidCertificate(_)))
}

#[tokio::test]
async fn trusted_server_answers_over_https_and_http2() -> anyhow::Result<()> {
    let server = TlsServer::start().await?;
    let client = builder_trusting(vec![server.cert.clone()])?
        .resolve("localhost", server.addr)
        .build()?;
    let response = client.get(server.url()).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN offers h2"
    );
    assert_eq!(response.headers()["x-seen-user-agent"], USER_AGENT);
    assert_eq!(response.bytes().await?.as_ref(), BODY);
    Ok(())
}

#[tokio::test]
async fn certificates_outside_the_trust_store_are_refused() -> anyhow::Result<()> {
    let server = TlsServer::start().await?;

    let other_root = builder_trusting(vec![unrelated_cert()])?
        .resolve("localhost", server.addr)
        .build()?;
    let error = other_root.get(server.url()).send().await.unwrap_err();
    assert!(certificate_refused(&error), "{error:?}");

    let system_roots = client_builder()?
        .resolve("localhost", server.addr)
        .build()?;
    let error = system_roots.get(server.url()).send().await.unwrap_err();
    assert!(certificate_refused(&error), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_clients_use_the_same_tls_setup() -> anyhow::Result<()> {
    let server = TlsServer::start().await?;
    let (url, addr, cert) = (server.url(), server.addr, server.cert.clone());
    // A blocking client lives outside the async runtime.
    let (trusted, untrusted) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let client = blocking_client_builder()?
            .tls_backend_preconfigured(tls_config(vec![cert])?)
            .resolve("localhost", addr)
            .build()?;
        let response = client.get(&url).send()?;
        let trusted = (response.status(), response.bytes()?);

        let system_roots = blocking_client_builder()?
            .resolve("localhost", addr)
            .build()?;
        let untrusted = system_roots.get(&url).send().unwrap_err();
        Ok((trusted, untrusted))
    })
    .await??;
    assert_eq!(trusted.0, 200);
    assert_eq!(trusted.1.as_ref(), BODY);
    assert!(certificate_refused(&untrusted), "{untrusted:?}");
    Ok(())
}
