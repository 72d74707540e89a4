//! Which IP addresses are public: globally reachable unicast, by the IANA IPv4 and IPv6
//! special-purpose address registries. IPv6 forms that carry an IPv4 address (mapped,
//! IPv4-compatible, NAT64 well-known prefix, 6to4) are judged by that IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 blocks foodseg never connects to: every special-purpose block that is not
/// globally reachable, the deprecated 6to4 relay anycast block, multicast and reserved.
/// (The globally reachable special-purpose blocks — AS112 192.31.196.0/24 and
/// 192.175.48.0/24, AMT 192.52.193.0/24 — are public; the two anycast addresses inside
/// 192.0.0.0/24 are refused with the rest of it.)
const V4_REFUSED: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata (169.254.169.254)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (DS-Lite, NAT64 discovery, …)
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and the limited broadcast 255.255.255.255
];

/// Maps IPv4-mapped IPv6 addresses to IPv4, so that allow lists written for IPv4 apply.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Globally reachable unicast.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    !V4_REFUSED.iter().any(|&(net, len)| {
        let mask = u32::MAX << (32 - len);
        ip & mask == u32::from(Ipv4Addr::from(net))
    })
}

/// Only global unicast (2000::/3) can be public. Outside it lie, among unassigned space,
/// unique local fc00::/7, link-local fe80::/10, multicast ff00::/8, discard-only
/// 100::/64, local-use NAT64 64:ff9b:1::/48 (whose IPv4 embedding depends on the local
/// prefix) and SRv6 SIDs 5f00::/16.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let [s0, s1, ..] = ip.segments();
    (s0 & 0xe000) == 0x2000
        // IETF protocol assignments 2001::/23: Teredo 2001::/32 (tunnels to any IPv4
        // address), benchmarking 2001:2::/48, ORCHID and a few anycast services.
        && !(s0 == 0x2001 && s1 < 0x0200)
        && !(s0 == 0x2001 && s1 == 0x0db8) // documentation 2001:db8::/32
        && !(s0 == 0x3fff && s1 < 0x1000) // documentation 3fff::/20
}

/// The IPv4 address an IPv6 address leads to: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d` (deprecated), the NAT64 well-known prefix
/// `64:ff9b::a.b.c.d`, and 6to4 `2002:aabb:ccdd::/48`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [.., a, b, c, d] = ip.octets();
    let low = Ipv4Addr::new(a, b, c, d);
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => {
            Some(low)
        }
        [0x2002, high, low16, ..] => {
            let [a, b] = high.to_be_bytes();
            let [c, d] = low16.to_be_bytes();
            Some(Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(table: &[(&str, bool)]) {
        for &(ip, public) in table {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(parsed), public, "{ip}");
        }
    }

    #[test]
    fn ipv4_special_purpose_blocks_are_not_public() {
        check(&[
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("10.1.2.3", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("100.128.0.1", true),
            ("127.0.0.1", false),
            ("127.255.255.254", false),
            ("169.254.169.254", false),
            ("172.15.255.255", true),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("172.32.0.1", true),
            ("192.0.0.8", false),
            ("192.0.0.170", false),
            ("192.0.2.1", false),
            ("192.31.196.1", true),
            ("192.52.193.1", true),
            ("192.88.99.1", false),
            ("192.168.1.1", false),
            ("192.175.48.1", true),
            ("198.17.255.255", true),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("198.20.0.1", true),
            ("198.51.100.1", false),
            ("203.0.113.1", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("1.1.1.1", true),
            ("8.8.8.8", true),
            ("93.184.216.34", true),
            ("223.255.255.255", true),
        ]);
    }

    #[test]
    fn ipv6_special_purpose_blocks_are_not_public() {
        check(&[
            ("::", false),
            ("::1", false),
            // IPv4-mapped and IPv4-compatible: the embedded IPv4 address decides.
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("::127.0.0.1", false),
            ("::10.0.0.1", false),
            ("::8.8.8.8", true),
            // NAT64 well-known prefix: the embedded IPv4 address decides.
            ("64:ff9b::10.0.0.1", false),
            ("64:ff9b::169.254.169.254", false),
            ("64:ff9b::8.8.8.8", true),
            // Local-use NAT64 and the rest of 64:ff9b::/32.
            ("64:ff9b:1::8.8.8.8", false),
            ("64:ff9b:1:abcd::1", false),
            ("64:ff9b:2::1", false),
            ("100::1", false),
            ("100::ffff:ffff:ffff:ffff", false),
            // Teredo, benchmarking, the rest of the IETF block, documentation.
            ("2001::1", false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),
            ("2001:2::1", false),
            ("2001:1ff:ffff::1", false),
            ("2001:200::1", true),
            ("2001:db8::1", false),
            ("3fff::1", false),
            ("3fff:fff::1", false),
            ("3fff:1000::1", true),
            // 6to4: the embedded IPv4 address decides.
            ("2002:a00:1::1", false),
            ("2002:7f00:1::1", false),
            ("2002:a9fe:a9fe::1", false),
            ("2002:808:808::1", true),
            ("5f00::1", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("4000::1", false),
            ("2606:4700::1111", true),
            ("2a00:1450:4001:81b::200e", true),
            ("2620:4f:8000::1", true),
        ]);
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:4860::8888".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The IPv6 forms that carry an IPv4 address.
        fn carriers(v4: Ipv4Addr) -> [Ipv6Addr; 4] {
            let [a, b, c, d] = v4.octets();
            let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            [
                v4.to_ipv6_mapped(),
                Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x2002, hi, lo, 0x1234, 0, 0, 0, 1),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Every IPv6 form of an IPv4 address is judged as that address (the
            /// IPv4-compatible forms of 0.0.0.0 and 0.0.0.1 are `::` and `::1`, refused
            /// either way).
            #[test]
            fn ipv6_carriers_are_judged_by_their_ipv4_address(raw: u32) {
                let v4 = Ipv4Addr::from(raw);
                let expected = is_public(IpAddr::V4(v4));
                for v6 in carriers(v4) {
                    prop_assert_eq!(is_public(IpAddr::V6(v6)), expected, "{} carrying {}", v6, v4);
                }
            }

            /// Nothing the standard library knows as special is public.
            #[test]
            fn what_std_calls_special_is_never_public(raw4: u32, raw6: u128) {
                let v4 = Ipv4Addr::from(raw4);
                if v4.is_private() || v4.is_loopback() || v4.is_link_local()
                    || v4.is_multicast() || v4.is_broadcast() || v4.is_documentation()
                    || v4.is_unspecified()
                {
                    prop_assert!(!is_public(IpAddr::V4(v4)), "{}", v4);
                }
                let v6 = Ipv6Addr::from(raw6);
                if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()
                    || v6.is_unique_local() || v6.is_unicast_link_local()
                {
                    prop_assert!(!is_public(IpAddr::V6(v6)), "{}", v6);
                }
            }

            /// Outside global unicast 2000::/3, an IPv6 address is public only through
            /// the IPv4 address it carries.
            #[test]
            fn only_global_unicast_ipv6_is_public(raw6: u128) {
                let v6 = Ipv6Addr::from(raw6);
                if (v6.segments()[0] & 0xe000) != 0x2000 && embedded_v4(v6).is_none() {
                    prop_assert!(!is_public(IpAddr::V6(v6)), "{}", v6);
                }
            }

            /// Any address in a refused IPv4 block is refused, whatever its host bits.
            #[test]
            fn every_address_of_a_refused_block_is_refused(
                block in 0..V4_REFUSED.len(),
                host: u32,
            ) {
                let (net, len) = V4_REFUSED[block];
                let mask = u32::MAX << (32 - u32::from(len));
                let ip = Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & mask) | (host & !mask));
                prop_assert!(!is_public(IpAddr::V4(ip)), "{}", ip);
            }
        }
    }
}
