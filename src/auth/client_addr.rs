//! Where a call comes from: the address of the socket's peer, or, when that
//! peer is one of the `trusted_proxies`, the client address the proxy
//! forwarded (`X-Forwarded-For`, else `Forwarded`).
//!
//! The forwarded chain is read from the right: each trusted proxy appends
//! the address it received the call from, so the rightmost address that is
//! not a trusted proxy is the client. Addresses to its left were written by
//! the client itself and are ignored. A value that is not an address (a
//! port-less obfuscated name, `unknown`, garbage) stops the walk at the last
//! trusted hop. With no trusted proxies (the default) the headers are never
//! read.
//!
//! `X-Forwarded-For` wins when both headers are present: a proxy that writes
//! `Forwarded` must remove any `X-Forwarded-For` the client sent.

use std::net::IpAddr;

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or a single
/// address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a bare address (a /32 or /128). Host
    /// bits must be zero, so a typo does not silently widen the network.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { net, prefix };
        if mask(net, prefix) != bits(net) {
            return Err(format!(
                "{s:?} has host bits set (did you mean {}/{prefix}?)",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == bits(self.net)
    }

    fn network(&self) -> IpAddr {
        let m = mask(self.net, self.prefix);
        match self.net {
            IpAddr::V4(_) => IpAddr::from((m as u32).to_be_bytes()),
            IpAddr::V6(_) => IpAddr::from(m.to_be_bytes()),
        }
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let host = width - u32::from(prefix);
    let keep = if host >= 128 {
        0
    } else {
        (u128::MAX >> (128 - width)) & !((1u128 << host) - 1)
    };
    bits(ip) & keep
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses the `trusted_proxies` setting; the error names the entry.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        list.iter()
            .map(|s| Cidr::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
            .map_err(|e| format!("trusted_proxies: {e}"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy,
    /// else the rightmost untrusted address of the forwarded chain.
    /// `x_forwarded_for` and `forwarded` are the header lines, in order.
    pub fn client(&self, peer: IpAddr, x_forwarded_for: &[&str], forwarded: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let chain: Vec<Option<IpAddr>> = if !x_forwarded_for.is_empty() {
            x_forwarded_for
                .iter()
                .flat_map(|line| line.split(','))
                .map(parse_hop)
                .collect()
        } else {
            forwarded
                .iter()
                .flat_map(|line| line.split(','))
                .filter_map(forwarded_for)
                .map(parse_hop)
                .collect()
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.contains(*ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// The `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// One hop: `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]:567`,
/// quoted or not.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The key a source is counted under: an IPv4 address, or the /64 of an
/// IPv6 address (one host usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.to_string(),
        v6 @ IpAddr::V6(_) => {
            let net = Cidr {
                net: v6,
                prefix: 64,
            }
            .network();
            format!("{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        assert!(!c.contains(ip("2001:db8::1")));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("192.0.2.7/32")
                .unwrap()
                .contains(ip("192.0.2.7"))
        );
    }

    #[test]
    fn bad_cidrs_are_refused_by_name() {
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.1/8",
            "example.com",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            let e = TrustedProxies::parse(&[bad]).unwrap_err();
            assert!(e.starts_with("trusted_proxies: "), "{e}");
        }
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(TrustedProxies::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn headers_count_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("127.0.0.1"), &["203.0.113.7"], &[]),
            ip("127.0.0.1")
        );
        let lb = TrustedProxies::parse(&["127.0.0.1/32", "10.0.0.0/8"]).unwrap();
        assert_eq!(
            lb.client(ip("198.51.100.1"), &["203.0.113.7"], &[]),
            ip("198.51.100.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &["203.0.113.7"], &[]),
            ip("203.0.113.7")
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &[], &[]),
            ip("127.0.0.1"),
            "no header: the proxy itself"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let lb = TrustedProxies::parse(&["127.0.0.1/32", "10.0.0.0/8"]).unwrap();
        // The client wrote 1.1.1.1 itself; the proxies appended the rest.
        assert_eq!(
            lb.client(ip("127.0.0.1"), &["1.1.1.1, 203.0.113.7, 10.0.0.5"], &[]),
            ip("203.0.113.7")
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &["1.1.1.1", "203.0.113.7:4711"], &[]),
            ip("203.0.113.7"),
            "several header lines, a port"
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &["10.0.0.9, 10.0.0.5"], &[]),
            ip("10.0.0.9"),
            "all trusted: the leftmost"
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &["203.0.113.7, garbage"], &[]),
            ip("127.0.0.1"),
            "garbage stops the walk at the last trusted hop"
        );
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let lb = TrustedProxies::parse(&["127.0.0.1/32"]).unwrap();
        assert_eq!(
            lb.client(
                ip("127.0.0.1"),
                &[],
                &["for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https"]
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &[], &["For=203.0.113.7;by=10.0.0.1"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &["203.0.113.8"], &["for=203.0.113.7"]),
            ip("203.0.113.8"),
            "X-Forwarded-For wins"
        );
        assert_eq!(
            lb.client(ip("127.0.0.1"), &[], &["for=unknown"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn sources_are_addresses_or_ipv6_slash_64s() {
        assert_eq!(source_key(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(source_key(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(source_key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(
            source_key(ip("2001:db8:1:2::9")),
            source_key(ip("2001:db8:1:2:ffff::1"))
        );
    }
}
