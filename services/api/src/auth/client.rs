//! The client's address: the TCP peer, or — when the peer is a trusted proxy — the
//! nearest address in `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;
use salvo::Request;

/// Who may reach what, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// `FOODSEG_REQUIRE_KEYS`: `/v2` routes need a key with scope `submit`.
    pub require_keys: bool,
    /// `FOODSEG_V1_ALLOW_CIDRS`: the MFR v1 routes answer only these client addresses
    /// (all when empty).
    pub v1_allow: Vec<IpNet>,
    /// `FOODSEG_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
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

/// Whether the client reached us over TLS: directly, or through a trusted proxy that
/// says so in `X-Forwarded-Proto`.
pub fn is_https(req: &Request, config: &AccessConfig) -> bool {
    if req.scheme() == &salvo::http::uri::Scheme::HTTPS {
        return true;
    }
    let Some(peer) = req.remote_addr().ip() else {
        return false;
    };
    config.trusted_proxies.iter().any(|net| net.contains(&peer))
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
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
