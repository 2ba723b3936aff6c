//! The HTTP listeners: 127.0.0.1 and [::1] on one port, or 0.0.0.0 and [::]
//! with `lan`. Never a wildcard address otherwise: dev servers are not for
//! the network. A family this machine lacks (no IPv6) is a warning; a port
//! another program holds on either family is an error, because a router
//! that answers on one family only would leave `curl`, which tries ::1
//! first, talking to that other program.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

use crate::error::RouterError;

/// Listeners bound, and the port they share.
pub struct Bound {
    pub listeners: Vec<TcpListener>,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
    /// Inherited from systemd ([`inherited`]), not bound here.
    pub inherited: bool,
}

/// The TCP listeners the caller was handed (`passed`: launchd's, see
/// `Config::passed`), else those systemd passed (`LISTEN_PID` is this
/// process, `LISTEN_FDS` of them from descriptor 3), if any: the router
/// serves on them instead of binding (`agentfs install`, or
/// `systemd-socket-activate`). The port of URLs is the first one's. A
/// passed descriptor that is not a listening TCP socket is an error.
pub fn inherited(passed: Vec<std::net::TcpListener>) -> Result<Option<Bound>, RouterError> {
    let mut fds = listenfd::ListenFd::from_env();
    let all: Vec<io::Result<Option<std::net::TcpListener>>> = match passed.is_empty() {
        false => passed.into_iter().map(|l| Ok(Some(l))).collect(),
        true => (0..fds.len()).map(|i| fds.take_tcp_listener(i)).collect(),
    };
    if all.is_empty() {
        return Ok(None);
    }
    let mut bound = Bound { listeners: Vec::new(), port: 0, addrs: Vec::new(), inherited: true };
    let bad = |i: usize, why: String| RouterError::Listen { port: 0, why: format!("passed socket {i}: {why}") };
    for (i, std) in all.into_iter().enumerate() {
        let std = std.map_err(|e| bad(i, e.to_string()))?;
        let std = std.ok_or_else(|| bad(i, "not a TCP listener".into()))?;
        std.set_nonblocking(true).map_err(|e| bad(i, e.to_string()))?;
        let l = TcpListener::from_std(std).map_err(|e| bad(i, e.to_string()))?;
        let addr = l.local_addr().map_err(|e| bad(i, e.to_string()))?;
        if bound.port == 0 {
            bound.port = addr.port();
        }
        bound.addrs.push(addr);
        bound.listeners.push(l);
    }
    tracing::info!(sockets = bound.listeners.len(), "serving on the sockets it was passed");
    Ok(Some(bound))
}

/// With port 0, how often to pick a new port when the other family's half
/// of the first one is taken.
const ANY_PORT_ATTEMPTS: usize = 8;

/// Binds both families on `port` (0: any free port, the same for both).
pub fn bind(port: u16, lan: bool) -> Result<Bound, RouterError> {
    let ips: [IpAddr; 2] = if lan {
        [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
    } else {
        [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    };
    let attempts = if port == 0 { ANY_PORT_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match bind_all(&ips, port) {
            Ok(bound) => return Ok(bound),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(RouterError::Listen { port, why: "no address to listen on".into() }))
}

fn bind_all(ips: &[IpAddr], port: u16) -> Result<Bound, RouterError> {
    let mut bound = Bound { listeners: Vec::new(), port, addrs: Vec::new(), inherited: false };
    let mut missing = Vec::new();
    for &ip in ips {
        let addr = SocketAddr::new(ip, bound.port);
        match bind_one(addr) {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(addr);
                bound.port = local.port();
                bound.addrs.push(local);
                bound.listeners.push(l);
            }
            Err(e) if family_unavailable(&e) => missing.push(format!("{addr}: {e}")),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let why = format!("{addr} is in use by another program");
                return Err(RouterError::Listen { port: bound.port, why });
            }
            Err(e) => return Err(RouterError::Listen { port: bound.port, why: format!("{addr}: {e}") }),
        }
    }
    if bound.listeners.is_empty() {
        return Err(RouterError::Listen { port, why: missing.join("; ") });
    }
    for m in missing {
        tracing::warn!("cannot listen on {m}; serving the other address family only");
    }
    Ok(bound)
}

/// Errors that mean "this machine has no such address family or address"
/// (IPv6 disabled, no loopback of that family), as opposed to a port conflict.
fn family_unavailable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_errno::EADDRNOTAVAIL | libc_errno::EAFNOSUPPORT | libc_errno::EPROTONOSUPPORT))
}

/// The errno values `family_unavailable` looks for, from rustix (no libc dependency here).
mod libc_errno {
    pub const EADDRNOTAVAIL: i32 = rustix::io::Errno::ADDRNOTAVAIL.raw_os_error();
    pub const EAFNOSUPPORT: i32 = rustix::io::Errno::AFNOSUPPORT.raw_os_error();
    pub const EPROTONOSUPPORT: i32 = rustix::io::Errno::PROTONOSUPPORT.raw_os_error();
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        rustix::net::sockopt::set_ipv6_v6only(&sock, true)?;
    }
    sock.bind(addr)?;
    sock.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_families_are_told_apart_from_conflicts() {
        let err = |n: i32| io::Error::from_raw_os_error(n);
        assert!(family_unavailable(&err(libc_errno::EADDRNOTAVAIL)));
        assert!(family_unavailable(&err(libc_errno::EAFNOSUPPORT)));
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert!(!family_unavailable(&in_use));
        assert!(!family_unavailable(&err(rustix::io::Errno::ADDRINUSE.raw_os_error())));
    }

    #[tokio::test]
    async fn any_port_is_the_same_on_both_families() {
        let b = bind(0, false).unwrap();
        assert_ne!(b.port, 0);
        assert!(b.addrs.iter().all(|a| a.port() == b.port));
    }
}
