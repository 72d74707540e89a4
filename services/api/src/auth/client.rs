//! The client's address: the TCP peer, or — when the peer is a trusted proxy — the
//! nearest address in `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;
use salvo::Request;

/// Who may reach what, from the configuration. The default is what ships: keys
/// required, Secure console cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// `FOODSEG_REQUIRE_KEYS` (default `true`): `POST /v2/uploads` needs a key with scope
    /// `submit`. (`GET /v2/jobs` and the operator routes need a key whatever it says.)
    pub require_keys: bool,
    /// `FOODSEG_V1_ALLOW_CIDRS`: the MFR v1 routes answer only these client addresses
    /// (all when empty).
    pub v1_allow: Vec<IpNet>,
    /// `FOODSEG_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `FOODSEG_V1_OWNER`: the name of the API key that owns the jobs created through the
    /// keyless v1 routes (so that it reads them in its feed); `None`: they have no owner.
    pub v1_owner: Option<String>,
    /// `FOODSEG_CONSOLE_INSECURE_COOKIE`: the console's session cookie without `Secure`,
    /// for plain-HTTP local use only.
    pub console_insecure_cookie: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            require_keys: true,
            v1_allow: Vec::new(),
            trusted_proxies: Vec::new(),
            v1_owner: None,
            console_insecure_cookie: false,
        }
    }
}

/// The client's address of `req` under `config`'s trusted proxies.
pub fn client_ip(req: &Request, config: &AccessConfig) -> Option<IpAddr> {
    let peer = req.remote_addr().ip()?;
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(resolve(peer, &forwarded, &config.trusted_proxies))
}

/// Walks `X-Forwarded-For` from the nearest hop while the hop is trusted; the first
/// untrusted address is the client. Anything unparsable ends the walk at the last
/// trusted hop (a client cannot forge its way past a proxy that appends).
fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = forwarded
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .rev();
    for hop in hops {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("203.0.113.9"), &["198.51.100.1"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(resolve(ip("10.0.0.5"), &[], &[]), ip("10.0.0.5"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client forged 1.2.3.4; the proxy appended the real address.
        assert_eq!(
            resolve(ip("10.0.0.5"), &["1.2.3.4, 198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // Two proxies, in two headers.
        assert_eq!(
            resolve(ip("10.0.0.5"), &["198.51.100.7", "10.1.1.1"], &trusted),
            ip("198.51.100.7")
        );
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(
            resolve(ip("10.0.0.5"), &["198.51.100.7, nonsense"], &trusted),
            ip("10.0.0.5")
        );
        // Without the header the proxy itself is the client.
        assert_eq!(resolve(ip("10.0.0.5"), &[], &trusted), ip("10.0.0.5"));
    }
}
