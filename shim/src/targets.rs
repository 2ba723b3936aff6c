//! Which of the instance's listeners a loopback connect reaches, by the
//! kernel's rules for TCP: the port and the family must match, and the
//! address too unless the listener is on the wildcard. A connect to
//! `[::1]:P` never reaches an IPv4-only listener on P, a connect to
//! `127.0.0.1:P` reaches an IPv4 listener before a dual-stack `[::]` one, and
//! `0.0.0.0`/`[::]` as a destination mean this host (Linux delivers them to
//! loopback).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use agentfs_registry::record::{self, Sidecar};
use agentfs_registry::runfile::RunFile;
use agentfs_registry::{SocketName, scan};

use crate::config::Identity;

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
    crate::sockaddr::is_loopback(ip).then_some(SocketAddr::new(ip, addr.port()))
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

/// The instance's socket that a connect to `dest` reaches: the best match
/// by [`reach`]; a socket without a sidecar yet (bound, listen() under way)
/// only when nothing else matches.
pub fn find(id: &Identity, dest: SocketAddr) -> Option<PathBuf> {
    let port = dest.port();
    let canonical = SocketName::new(id.app.clone(), id.instance.clone(), port).stem_in(&id.run_dir);
    let mut best: Option<(u8, PathBuf)> = None;
    match judge(&id.run_dir, &canonical, dest) {
        Some(3) => return Some(scan::socket_path(&id.run_dir, &canonical)),
        Some(score) => best = Some((score, scan::socket_path(&id.run_dir, &canonical))),
        None => {}
    }
    let entries = std::fs::read_dir(&id.run_dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".sock")) else { continue };
        if stem == canonical || !might_be(id, port, name.to_str().unwrap_or_default()) {
            continue;
        }
        let Some(score) = judge(&id.run_dir, stem, dest) else { continue };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, scan::socket_path(&id.run_dir, stem)));
        }
    }
    best.map(|(_, p)| p)
}

/// A socket file name that may be one of the instance's on `port` (hashed
/// names are told by their sidecar).
fn might_be(id: &Identity, port: u16, file: &str) -> bool {
    match RunFile::classify(file) {
        RunFile::Socket(n) => n.app == id.app && n.instance == id.instance && n.port == port,
        RunFile::HashedSocket(_) => true,
        _ => false,
    }
}

/// The score of the socket `<stem>.sock` for `dest`: by its sidecar's
/// address; 1 for a socket with no sidecar yet; `None` for no socket, or a
/// sidecar of another instance, port or address.
fn judge(run_dir: &Path, stem: &str, dest: SocketAddr) -> Option<u8> {
    if !is_socket(&scan::socket_path(run_dir, stem)) {
        return None;
    }
    match record::read::<Sidecar>(&scan::sidecar_path(run_dir, stem)) {
        Ok(sc) if sc.port != dest.port() => None,
        Ok(sc) => reach(sc.addr, dest),
        Err(_) => Some(1),
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> SocketAddr {
        local_destination(s.parse().unwrap()).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unspecified_destinations_are_loopback() {
        assert_eq!(d("0.0.0.0:80"), "127.0.0.1:80".parse().unwrap());
        assert_eq!(d("[::]:80"), "[::1]:80".parse().unwrap());
        assert_eq!(d("[::ffff:0.0.0.0]:80"), "[::ffff:127.0.0.1]:80".parse().unwrap());
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
