//! URL safety for image and webhook URLs: the scheme and length a client may send, and
//! the addresses foodseg may connect to. Addresses are checked after DNS resolution, on
//! every connection (including each redirect hop), not on the URL's text.

mod addresses;
mod client;
mod refusal;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

pub use refusal::Refusal;

/// Longest URL a client may send.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL given by a client is refused before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long, over the {MAX_URL_LEN} limit")]
    TooLong(usize),
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    #[error("has scheme {0:?}; only http and https are accepted")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
}

/// Checks what a client may send: an absolute http(s) URL with a host, at most 2,048 chars.
pub fn validate_url(raw: &str) -> Result<Url, UrlError> {
    if raw.trim().is_empty() {
        return Err(UrlError::Empty);
    }
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(raw.len()));
    }
    let url = Url::parse(raw).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_string()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    Ok(url)
}

/// An address foodseg refuses to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {0} is private, loopback, link-local or otherwise not public; refused")]
pub struct Blocked(pub IpAddr);

/// Which addresses outgoing requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Ranges exempt from the block (`FOODSEG_URL_ALLOW_CIDRS`).
    pub allow: Vec<IpNet>,
}

impl NetPolicy {
    /// Parses a comma-separated CIDR list such as `127.0.0.0/8,::1/128`.
    pub fn parse_allow_list(list: &str) -> Result<Self, ipnet::AddrParseError> {
        let allow = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(NetPolicy { allow })
    }

    /// Whether a connection to `ip` is allowed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        let ip = addresses::canonical(ip);
        if self.allow.iter().any(|net| net.contains(&ip)) || addresses::is_public(ip) {
            Ok(())
        } else {
            Err(Blocked(ip))
        }
    }

    /// Checks a URL whose host is an IP literal (those never pass through DNS).
    pub fn check_url_host(&self, url: &Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }

    /// Whether `url` may be fetched now: http(s), and a host that is an allowed address
    /// or a name with at least one allowed address (found within `timeout`). The guarded
    /// client enforces the same on every connection; checking first tells "refused for
    /// good" from "cannot resolve right now" ([`Refusal::is_permanent`]).
    pub async fn check_url(&self, url: &Url, timeout: Duration) -> Result<(), Refusal> {
        self.check_url_literal(url)?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        match tokio::time::timeout(timeout, self.resolve(host, port)).await {
            Ok(resolved) => resolved.map(drop),
            Err(_) => Err(Refusal::LookupTimeout {
                host: host.to_string(),
            }),
        }
    }

    /// The checks that need no lookup: the scheme, and a host given as an IP address.
    fn check_url_literal(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().to_string()));
        }
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(_) => self.check_url_host(url).map_err(Refusal::Address),
        }
    }

    /// The allowed addresses of `host`, or why there is none.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| Refusal::Lookup {
                host: host.to_string(),
                source,
            })?;
        let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.partition(|a| self.check_ip(a.ip()).is_ok());
        if !allowed.is_empty() {
            return Ok(allowed);
        }
        Err(match refused.first() {
            Some(first) => Refusal::Resolves {
                host: host.to_string(),
                blocked: Blocked(addresses::canonical(first.ip())),
            },
            None => Refusal::NoAddress {
                host: host.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_urls_are_validated() {
        assert!(validate_url("https://example.com/a.jpg").is_ok());
        assert_eq!(validate_url(""), Err(UrlError::Empty));
        assert_eq!(
            validate_url("ftp://example.com/a.jpg"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert!(matches!(
            validate_url("not a url"),
            Err(UrlError::Invalid(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(validate_url(&long), Err(UrlError::TooLong(_))));
        assert!(matches!(
            validate_url("file:///etc/passwd"),
            Err(UrlError::Scheme(_))
        ));
    }

    #[test]
    fn private_addresses_are_blocked_unless_allowed() {
        let strict = NetPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(strict.check_ip(ip.parse().unwrap()).is_err(), "{ip}");
        }
        assert!(strict.check_ip("93.184.216.34".parse().unwrap()).is_ok());
        assert!(strict.check_ip("2606:4700::1111".parse().unwrap()).is_ok());
        let local = NetPolicy::parse_allow_list("127.0.0.0/8, ::1/128").unwrap();
        assert!(local.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(local.check_ip("10.0.0.1".parse().unwrap()).is_err());
        assert!(NetPolicy::parse_allow_list("nonsense").is_err());
    }

    async fn check(policy: &NetPolicy, url: &str) -> Result<(), Refusal> {
        let url = Url::parse(url).unwrap();
        policy.check_url(&url, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn url_checks_say_why_they_refuse() {
        let strict = NetPolicy::default();
        assert!(check(&strict, "http://8.8.8.8/a.jpg").await.is_ok());
        assert!(matches!(
            check(&strict, "ftp://example.com/a.jpg").await,
            Err(Refusal::Scheme(scheme)) if scheme == "ftp"
        ));
        let metadata = check(&strict, "http://169.254.169.254/latest").await;
        assert!(
            matches!(&metadata, Err(Refusal::Address(Blocked(ip))) if ip.to_string() == "169.254.169.254"),
            "{metadata:?}"
        );
        assert!(matches!(
            check(&strict, "http://[::ffff:10.0.0.1]/").await,
            Err(Refusal::Address(_))
        ));

        let by_name = check(&strict, "http://localhost:8080/hook")
            .await
            .unwrap_err();
        assert!(by_name.is_permanent());
        assert_eq!(
            by_name.to_string(),
            "localhost resolves to address 127.0.0.1 is private, loopback, link-local or \
             otherwise not public; refused"
        );

        // `.invalid` never resolves: not refused for good, since DNS may just be down.
        let missing = check(&strict, "https://nothing.invalid/a.jpg")
            .await
            .unwrap_err();
        assert!(
            matches!(
                missing,
                Refusal::Lookup { .. } | Refusal::LookupTimeout { .. }
            ),
            "{missing:?}"
        );
        assert!(!missing.is_permanent());

        let local = NetPolicy::parse_allow_list("127.0.0.0/8").unwrap();
        assert!(check(&local, "http://localhost:8080/hook").await.is_ok());
        assert!(check(&local, "http://127.0.0.1:8080/hook").await.is_ok());
    }

    #[test]
    fn literal_hosts_are_checked() {
        let strict = NetPolicy::default();
        let url = Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(strict.check_url_host(&url).is_err());
        let url = Url::parse("http://[::1]:8080/").unwrap();
        assert!(strict.check_url_host(&url).is_err());
    }
}
