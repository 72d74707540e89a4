//! The one way foodseg builds HTTP clients. reqwest is compiled without a TLS crypto
//! provider of its own, so that ring (which sqlx and async-nats use too) is the only one
//! in the build; a client built with `reqwest::Client::new()` would panic at run time for
//! want of a provider. Every client therefore starts from [`client_builder`] (or
//! [`blocking_client_builder`]), which hands reqwest a ready rustls configuration: the
//! ring provider, the platform's certificate verifier over the system's trust store
//! (`/etc/ssl/certs` and the like; `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured, and
//! nothing is fetched at run time), HTTP/2 and HTTP/1.1 offered by ALPN, and the
//! `foodseg/<version>` user agent. The workspace's `clippy.toml` refuses reqwest's own
//! constructors everywhere else.
//!
//! [`redact`] says what may be shown of a URL (in spans, logs, stored errors, events).
//!
//! Because the TLS setup comes ready-made, reqwest's TLS options (`add_root_certificate`,
//! `tls_*`, `danger_*`) have no effect on these builders.

pub mod redact;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls_platform_verifier::Verifier;

/// The `User-Agent` of the requests foodseg sends.
pub const USER_AGENT: &str = concat!("foodseg/", env!("CARGO_PKG_VERSION"));

/// Why an HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable root certificate was found in the system's trust store (install the
    /// `ca-certificates` package, or point `SSL_CERT_FILE` at a bundle).
    #[error("cannot set up TLS certificate verification")]
    Tls(#[source] rustls::Error),
    #[error("cannot build the HTTP client")]
    Build(#[from] reqwest::Error),
}

/// A reqwest builder with foodseg's TLS setup and user agent; add timeouts, a resolver,
/// a redirect policy and so on, then `build()`.
pub fn client_builder() -> Result<reqwest::ClientBuilder, Error> {
    builder_trusting(Vec::new())
}

/// A client with foodseg's TLS setup and user agent and reqwest's defaults otherwise.
pub fn client() -> Result<reqwest::Client, Error> {
    Ok(client_builder()?.build()?)
}

/// Like [`client_builder`], for reqwest's blocking client. As with any blocking reqwest
/// client, `build()` and requests must run outside an async runtime.
#[cfg(feature = "blocking")]
pub fn blocking_client_builder() -> Result<reqwest::blocking::ClientBuilder, Error> {
    #[allow(clippy::disallowed_methods)] // the one place blocking clients start from
    let builder = reqwest::blocking::Client::builder();
    Ok(builder
        .tls_backend_preconfigured(tls_config(Vec::new())?)
        .user_agent(USER_AGENT))
}

/// [`client_builder`] that also trusts `extra_roots` beside the system's trust store.
fn builder_trusting(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<reqwest::ClientBuilder, Error> {
    #[allow(clippy::disallowed_methods)] // the one place clients start from
    let builder = reqwest::Client::builder();
    Ok(builder
        .tls_backend_preconfigured(tls_config(extra_roots)?)
        .user_agent(USER_AGENT))
}

/// rustls on the ring provider, verifying servers with the platform verifier (reqwest's
/// own choice when it brings its provider), with the ALPN protocols reqwest would offer.
fn tls_config(extra_roots: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        Verifier::new_with_extra_roots(extra_roots, provider.clone()).map_err(Error::Tls)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .dangerous() // a custom verifier: the platform's, which does verify
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
