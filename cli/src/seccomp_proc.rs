//! What the seccomp supervisor (`seccomp`) reads of a process of the tree
//! and its sockets: the caller's process, the sockaddr argument from its
//! memory, a copy of its descriptor (`pidfd_getfd`: the same open socket),
//! what kind of socket that is, its command line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Loopback or the wildcard, in any spelling (as the shim converts).
pub fn convertible(ip: IpAddr) -> bool {
    let unmapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    agentfs_registry::reach::is_loopback(ip) || unmapped.is_unspecified()
}

pub fn unix_accepts(path: &Path) -> bool {
    agentfs_registry::sunpath::SockPath::new(path)
        .is_ok_and(|p| std::os::unix::net::UnixStream::connect(p.as_path()).is_ok())
}

/// The process (thread group) of thread `tid`.
pub fn tgid(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:"))?.trim().parse().ok()
}

/// The sockaddr at `ptr` (`len` bytes) in the memory of thread `tid`.
pub fn read_sockaddr(tid: u32, ptr: u64, len: u32) -> Option<SocketAddr> {
    let mut buf = [0u8; 28];
    let len = usize::try_from(len).ok()?.min(buf.len());
    let mem = std::fs::File::open(format!("/proc/{tid}/mem")).ok()?;
    mem.read_exact_at(&mut buf[..len], ptr).ok()?;
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    match i32::from(u16::from_ne_bytes([buf[0], buf[1]])) {
        libc::AF_INET if len >= 16 => Some((Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]), port).into()),
        libc::AF_INET6 if len >= 24 => {
            let ip: [u8; 16] = buf[8..24].try_into().ok()?;
            Some((Ipv6Addr::from(ip), port).into())
        }
        _ => None,
    }
}

/// A copy of descriptor `fd` of process `pid` (the same open socket).
pub fn their_socket(pid: u32, fd: i32) -> Option<OwnedFd> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).ok()
}

/// A TCP stream socket of the family (IPv6 or not).
pub fn tcp_socket(sock: &impl AsFd, v6: bool) -> bool {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if v6 { AddressFamily::INET6 } else { AddressFamily::INET };
    let tcp = sockopt::socket_protocol(sock).is_ok_and(|p| p.is_none_or(|p| p == rustix::net::ipproto::TCP));
    sockopt::socket_type(sock) == Ok(SocketType::STREAM) && sockopt::socket_domain(sock) == Ok(family) && tcp
}

/// A TCP socket of the requested family, not bound yet.
pub fn unbound_tcp(sock: &impl AsFd, v6: bool) -> bool {
    let unbound =
        rustix::net::getsockname(sock).ok().and_then(|a| SocketAddr::try_from(a).ok()).is_some_and(|a| a.port() == 0);
    tcp_socket(sock, v6) && unbound
}

/// Whether the socket's open file is non-blocking (O_NONBLOCK).
pub fn nonblocking(sock: &impl AsFd) -> bool {
    rustix::fs::fcntl_getfl(sock).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK))
}

/// The inode of socket descriptor `fd` of `pid` (`socket:[N]`).
pub fn socket_inode(pid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

pub fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_loopback_and_wildcard_only() {
        for ip in ["127.0.0.1", "127.1.2.3", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1", "::ffff:0.0.0.0"] {
            assert!(convertible(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.168.1.2", "10.0.0.1", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(!convertible(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn reads_a_sockaddr_from_a_process_memory() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8000u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&3000u16.to_be_bytes());
        v6[23] = 1;
        let me = std::process::id();
        let at = |b: &[u8]| b.as_ptr() as u64;
        assert_eq!(read_sockaddr(me, at(&v4), 16), Some("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(read_sockaddr(me, at(&v6), 28), Some("[::1]:3000".parse().unwrap()));
        assert_eq!(read_sockaddr(me, at(&v4), 8), None, "too short for its family");
        assert_eq!(tgid(me), Some(me));
    }
}
