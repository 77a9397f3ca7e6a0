//! Who a request's client is, for its budget of new values: the connection's peer, or — when the peer is a
//! trusted proxy in front of veil (a load balancer, a CDN) — the address that proxy names in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;

use crate::config::{canonical_ip, Cidr};

/// The address `peer`'s request is budgeted under. The `X-Forwarded-For` chain is read from the right, past the
/// trusted proxies that appended to it, to the first address no trusted proxy is at: the client as the nearest
/// trusted proxy saw it. Anything left of that was written by the client and is ignored; an entry that is not
/// an address ends the walk at the proxy that passed it on.
pub fn budget_key(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = canonical_ip(peer);
    if is_trusted(client) {
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .collect();
        for entry in chain.iter().rev() {
            let Some(ip) = parse_entry(entry) else { break };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
    }
    prefix_of(client)
}

/// An `X-Forwarded-For` entry: an address, possibly `[v6]:port` or `v4:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    let host = match entry.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => entry.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(canonical_ip)
}

/// An IPv6 client is budgeted by its /64: one subscriber holds the whole prefix and could rotate through it.
fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(budget_key(ip("203.0.113.9"), &headers(&["198.51.100.1"]), &trusted), ip("203.0.113.9"));
        assert_eq!(budget_key(ip("203.0.113.9"), &headers(&[]), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_peer_names_the_client_and_what_the_client_wrote_is_ignored() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = ip("10.0.0.2");
        // The client sent a made-up X-Forwarded-For; the load balancer appended the client's real address.
        let h = headers(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(budget_key(peer, &h, &trusted), ip("198.51.100.7"));
        // Two trusted hops, headers split over two lines.
        let h = headers(&["6.6.6.6", "198.51.100.7, 10.1.1.1"]);
        assert_eq!(budget_key(peer, &h, &trusted), ip("198.51.100.7"));
        // Garbage from a hop ends the walk at the last trusted proxy.
        assert_eq!(budget_key(peer, &headers(&["198.51.100.7, nonsense"]), &trusted), peer);
        // No header: the proxy itself.
        assert_eq!(budget_key(peer, &headers(&[]), &trusted), peer);
        // Ports and brackets are read.
        assert_eq!(budget_key(peer, &headers(&["198.51.100.7:5555"]), &trusted), ip("198.51.100.7"));
        assert_eq!(budget_key(peer, &headers(&["[2001:db8::1]:80"]), &trusted), ip("2001:db8::"));
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_v4_is_v4() {
        assert_eq!(budget_key(ip("2001:db8:1:2:aaaa::1"), &headers(&[]), &[]), ip("2001:db8:1:2::"));
        assert_eq!(budget_key(ip("::ffff:198.51.100.7"), &headers(&[]), &[]), ip("198.51.100.7"));
    }
}
