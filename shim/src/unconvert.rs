//! Client sockets that bound before connect(). A TCP client may bind a
//! source address first (Python's `source_address`, Node's `localPort`,
//! `bindresvport`) or retry connect() after a refusal; to the shim such a
//! socket is either still TCP with a kernel port, or was converted at bind
//! because it named a loopback port. Both must still reach the instance's
//! listeners (`redirect`), and a converted one whose destination is not the
//! instance's becomes a TCP socket bound to its address again.

use std::net::SocketAddr;

use libc::c_int;

use crate::fdtable::{self, FdState};
use crate::{listeners, sockaddr, swap, sys};

/// The name of `fd` when it is a TCP socket of the family asked that is
/// neither connected, connecting nor listening (so a connect may be
/// redirected); port 0 when it is not bound.
pub fn unconnected_inet(fd: c_int, v6: bool) -> Option<SocketAddr> {
    let own = sys::sock_name(fd)?.inet()?;
    if own.is_ipv6() != v6 {
        return None;
    }
    (own.port() == 0 || is_closed(fd)).then_some(own)
}

/// TCP state CLOSE: bound or refused, nothing under way.
#[cfg(target_os = "linux")]
fn is_closed(fd: c_int) -> bool {
    const TCP_CLOSE: u8 = 7;
    let mut info = [0u8; 8];
    sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info).is_ok_and(|n| n > 0) && info[0] == TCP_CLOSE
}

#[cfg(not(target_os = "linux"))]
fn is_closed(fd: c_int) -> bool {
    sys::peer_name(fd).is_none() && !sys::is_listening(fd)
}

/// Puts a TCP socket bound to the address `fd` was converted for in its
/// place, with the options the app set; the socket file goes. The connect
/// then runs on it unchanged. Err: the errno for the app (the address is
/// taken on TCP, say).
pub fn back_to_tcp(fd: c_int, st: FdState) -> Result<(), c_int> {
    let v6 = st.local.v6;
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let rep = swap::prepare_in(fd, domain, v6).map_err(|_| libc::ENOBUFS)?;
    for (level, name, value) in st.options.iter() {
        let _ = sys::setsockopt_bytes(rep.new.raw(), level, name, value);
    }
    let (addr, len) = sockaddr::encode(&st.local.to_std());
    // SAFETY: `addr` holds a valid socket address of `len` bytes.
    if unsafe { libc::bind(rep.new.raw(), (&raw const addr).cast(), len) } < 0 {
        return Err(crate::errno::get());
    }
    rep.commit()?;
    listeners::release_state(fdtable::take(fd));
    Ok(())
}
