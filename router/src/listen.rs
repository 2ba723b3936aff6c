//! The HTTP listeners: 127.0.0.1 and [::1] on one port (one family failing
//! is a warning, both an error), or 0.0.0.0 and [::] with `lan`. Never a
//! wildcard address otherwise: dev servers are not for the network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

use crate::error::RouterError;

/// Listeners bound, and the port they share.
pub struct Bound {
    pub listeners: Vec<TcpListener>,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
}

/// Binds both families on `port` (0: any free port, the same for both).
pub fn bind(port: u16, lan: bool) -> Result<Bound, RouterError> {
    let ips: [IpAddr; 2] = if lan {
        [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
    } else {
        [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    };
    let mut bound = Bound { listeners: Vec::new(), port, addrs: Vec::new() };
    let mut errors = Vec::new();
    for ip in ips {
        let addr = SocketAddr::new(ip, bound.port);
        match bind_one(addr) {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(addr);
                bound.port = local.port();
                bound.addrs.push(local);
                bound.listeners.push(l);
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    if bound.listeners.is_empty() {
        return Err(RouterError::Listen { port, why: errors.join("; ") });
    }
    for e in errors {
        tracing::warn!("cannot listen on {e}; serving the other address family only");
    }
    Ok(bound)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        rustix::net::sockopt::set_ipv6_v6only(&sock, true)?;
    }
    sock.bind(addr)?;
    sock.listen(1024)
}
