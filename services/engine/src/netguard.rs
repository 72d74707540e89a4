//! URL safety for image and webhook URLs: the scheme and length a client may send, and
//! the addresses foodseg may connect to. Addresses are checked after DNS resolution, on
//! every connection (including each redirect hop), not on the URL's text.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

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
        let ip = canonical(ip);
        if self.allow.iter().any(|net| net.contains(&ip)) || is_public(ip) {
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

    /// An HTTP client that can only reach allowed addresses: DNS answers are filtered,
    /// IP-literal hosts are checked, and every redirect hop is checked again.
    pub fn http_client(
        &self,
        connect_timeout: Duration,
        max_redirects: usize,
    ) -> Result<reqwest::Client, foodseg_http::Error> {
        let resolver = Arc::new(GuardedResolver {
            policy: self.clone(),
        });
        let policy = self.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            if !matches!(attempt.url().scheme(), "http" | "https") {
                let scheme = attempt.url().scheme().to_string();
                return attempt.error(format!("redirect to a {scheme} URL"));
            }
            if let Err(blocked) = policy.check_url_host(attempt.url()) {
                return attempt.error(blocked);
            }
            attempt.follow()
        });
        Ok(foodseg_http::client_builder()?
            .dns_resolver(resolver)
            .redirect(redirect)
            .connect_timeout(connect_timeout)
            .build()?)
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4 so the IPv4 rules apply to them.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Globally routable unicast: not loopback, private, link-local (incl. cloud metadata
/// 169.254.169.254), shared, documentation, benchmarking, multicast or reserved.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (seg0 == 0x0064 && v6.segments()[1] == 0xff9b)) // NAT64 can reach private v4
        }
    }
}

/// DNS resolution that drops refused addresses and fails when none is left.
struct GuardedResolver {
    policy: NetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(b) => {
                        refused = Some(b);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some(b) => format!("{host} resolves to {}", b).into(),
                    None => format!("{host} has no address").into(),
                };
                return Err(err);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
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

    #[test]
    fn literal_hosts_are_checked() {
        let strict = NetPolicy::default();
        let url = Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(strict.check_url_host(&url).is_err());
        let url = Url::parse("http://[::1]:8080/").unwrap();
        assert!(strict.check_url_host(&url).is_err());
    }
}
