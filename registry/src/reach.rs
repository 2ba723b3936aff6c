//! Which listener a loopback TCP connect reaches, by the kernel's rules:
//! the port and the family must match, and the address too unless the
//! listener is on the wildcard; a dual-stack `[::]` takes IPv4 after an IPv4
//! listener. Shared by the shim (connects redirected to the instance's
//! sockets) and the wrapper's seccomp supervisor.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The destination as Linux delivers it: an unspecified address is this
/// host's loopback, in the spelling of the caller's family. `None` for a
/// destination off this host (not redirected).
pub fn local_destination(addr: SocketAddr) -> Option<SocketAddr> {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|m| m.is_unspecified()) => {
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        }
        ip => ip,
    };
    is_loopback(ip).then_some(SocketAddr::new(ip, addr.port()))
}

/// Loopback in any of its spellings (v4-mapped too).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |m| m.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// How well a listener bound to `bound` matches a connect to `dest` (a
/// local destination): `None` when TCP would not deliver it there, higher
/// is preferred (the listener of the destination's own family first).
pub fn reach(bound: IpAddr, dest: SocketAddr) -> Option<u8> {
    let to_v4 = match dest.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match (bound, to_v4) {
        (IpAddr::V4(b), Some(d)) => (b.is_unspecified() || b == d).then_some(3),
        (IpAddr::V4(_), None) => None,
        (IpAddr::V6(b), Some(d)) => match b.to_ipv4_mapped() {
            Some(m) => (m.is_unspecified() || m == d).then_some(3),
            // A dual-stack wildcard takes IPv4 too (unless v6-only, which
            // sidecars do not record: see docs/decisions.md).
            None => b.is_unspecified().then_some(2),
        },
        (IpAddr::V6(b), None) => (b.is_unspecified() || IpAddr::V6(b) == dest.ip()).then_some(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unspecified_destinations_are_loopback() {
        assert_eq!(local_destination(d("0.0.0.0:80")).unwrap(), "127.0.0.1:80".parse().unwrap());
        assert_eq!(local_destination(d("[::]:80")).unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(local_destination(d("[::ffff:0.0.0.0]:80")).unwrap(), "[::ffff:127.0.0.1]:80".parse().unwrap());
        assert!(local_destination("10.0.0.1:80".parse().unwrap()).is_none());
    }

    #[test]
    fn families_reach_only_their_own_listeners() {
        assert_eq!(reach(ip("127.0.0.1"), d("127.0.0.1:80")), Some(3));
        assert_eq!(reach(ip("0.0.0.0"), d("127.0.0.2:80")), Some(3));
        assert_eq!(reach(ip("127.0.0.1"), d("127.0.0.2:80")), None);
        assert_eq!(reach(ip("127.0.0.1"), d("[::1]:80")), None, "v4-only listener, v6 connect");
        assert_eq!(reach(ip("0.0.0.0"), d("[::1]:80")), None);
        assert_eq!(reach(ip("::1"), d("127.0.0.1:80")), None);
        assert_eq!(reach(ip("::"), d("127.0.0.1:80")), Some(2), "dual stack, after a v4 listener");
        assert_eq!(reach(ip("::"), d("[::1]:80")), Some(3));
        assert_eq!(reach(ip("127.0.0.1"), d("[::ffff:127.0.0.1]:80")), Some(3), "mapped is IPv4");
        assert_eq!(reach(ip("::ffff:127.0.0.1"), d("127.0.0.1:80")), Some(3));
    }
}
