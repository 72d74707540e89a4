//! Serving a salvo router on loopback for the length of a test.

use std::net::SocketAddr;

use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `127.0.0.1` at a free port until the returned token is cancelled.
pub async fn serve_router(router: Router) -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = Server::new(TcpAcceptor::try_from(listener)?);
    let handle = server.handle();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        handle.stop_forceful();
    });
    tokio::spawn(server.serve(router));
    Ok((addr, shutdown))
}
