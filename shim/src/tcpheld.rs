//! Ports this process already holds on real TCP. A listener bound with port
//! 0 (never converted) holds its kernel port; binding that port again must
//! fail with EADDRINUSE as TCP would, not be converted beside it (Node's
//! `listen()` retries and port probes loop forever otherwise). The question
//! is put to the kernel with a probe bind carrying the app's options; when
//! it refuses, the port counts as held only if one of this process's own
//! descriptors is bound to it (a port held by a process outside the
//! instance must not stop conversion: that is what lets instances share it).
//!
//! Redirected clients that bound a port hold it too, as TCP's connected
//! sockets do: a bind of it is EADDRINUSE unless both sockets have
//! SO_REUSEADDR, and a second connection from it to the same destination is
//! EADDRNOTAVAIL.

use std::net::SocketAddr;

use libc::c_int;

use crate::fdtable::{self, Kind};
use crate::sockaddr::Addr;
use crate::{sockaddr, sys};

/// Whether binding `addr` on `fd` would conflict, on TCP, with a socket of
/// this process.
pub fn held_here(fd: c_int, addr: SocketAddr) -> bool {
    let domain = if addr.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
    let Ok(probe) = sys::socket(domain, libc::SOCK_STREAM) else { return false };
    let mut opts = vec![(libc::SOL_SOCKET, libc::SO_REUSEADDR), (libc::SOL_SOCKET, libc::SO_REUSEPORT)];
    if addr.is_ipv6() {
        opts.push((libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
    }
    for (level, name) in opts {
        if let Ok(v) = sys::getsockopt_int(fd, level, name) {
            let _ = sys::setsockopt_int(probe.raw(), level, name, v);
        }
    }
    let (storage, len) = sockaddr::encode(&addr);
    let refused = crate::errno::preserve(|| {
        // SAFETY: `storage` holds a valid socket address of `len` bytes.
        let r = unsafe { libc::bind(probe.raw(), (&raw const storage).cast(), len) };
        r < 0 && crate::errno::get() == libc::EADDRINUSE
    });
    refused && crate::errno::preserve(|| own_socket_on(addr.port(), fd, probe.raw()))
}

/// Whether a descriptor of this process (other than `skip` and `probe`) is
/// a TCP socket bound to `port`.
fn own_socket_on(port: u16, skip: c_int, probe: c_int) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd")) else { return false };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<c_int>().ok()).any(|fd| {
        fd != skip
            && fd != probe
            && sys::sock_name(fd).and_then(|n| n.inet()).is_some_and(|a| a.port() == port)
            && sys::socket_type(fd) == Some(libc::SOCK_STREAM)
    })
}

/// Whether a redirected client of this process holds `addr`'s port in a way
/// that refuses a bind on `fd`.
pub fn held_by_client(fd: c_int, addr: SocketAddr) -> bool {
    let reuse = |fd: c_int| sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR).is_ok_and(|v| v != 0);
    let mut held = false;
    fdtable::tracked_in(0, fdtable::MAX_FD as c_int - 1, |other, st| {
        if st.kind == Kind::Client && st.local.port == addr.port() && other != fd {
            held |= !(reuse(fd) && reuse(other));
        }
    });
    held
}

/// Whether a redirected client of this process already connects `local` to
/// `peer` (TCP: the four-tuple is taken).
pub fn connection_exists(local: Addr, peer: Addr) -> bool {
    let mut found = false;
    fdtable::tracked_in(0, fdtable::MAX_FD as c_int - 1, |_, st| {
        found |= st.kind == Kind::Client && st.local == local && st.peer == peer;
    });
    found
}
