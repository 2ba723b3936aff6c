//! Hooks on the life of a socket: creation, bind (where TCP becomes Unix),
//! listen (where the sidecar is written), connect (redirected inside an
//! instance), accept, and the names the app reads back. Each implementation
//! either answers (`Outcome::Done`) or lets the original call run.

use libc::{c_int, sockaddr, socklen_t};

use crate::fdtable::{self, FdState, Kind};
use crate::guard::{Outcome, Pass};
use crate::macros::hooks;
use crate::recognize::{self, port_for_inode};
use crate::sockaddr::{Addr, Name, OutAddr, read_inet};
use crate::{announce, clientport, convert, errno, listeners, redirect, sys};

hooks! {
    fn socket(domain: c_int, ty: c_int, protocol: c_int) => on_socket, like libc::socket;
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) => on_bind, like libc::bind;
    fn listen(fd: c_int, backlog: c_int) => on_listen, like libc::listen;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) => on_connect, like libc::connect;
    #[cfg(target_vendor = "apple")]
    fn connect_nocancel(fd: c_int, addr: *const sockaddr, len: socklen_t)
        => on_connect, like libc::connect, symbol "connect$NOCANCEL";
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) => on_accept, like libc::accept;
    #[cfg(target_vendor = "apple")]
    fn accept_nocancel(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t)
        => on_accept, like libc::accept, symbol "accept$NOCANCEL";
    #[cfg(not(target_vendor = "apple"))]
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) => on_accept4, like libc::accept4;
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) => on_getsockname, like libc::getsockname;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) => on_getpeername, like libc::getpeername;
}

/// A descriptor number handed out again: whatever was recorded under it
/// belonged to a descriptor closed behind the shim's back.
pub fn forget(fd: c_int) {
    listeners::release_state(fdtable::take(fd));
}

/// The state of `fd`, recognising (and remembering) descriptors that came
/// without bookkeeping.
pub fn state_or_recognize(fd: c_int) -> Option<FdState> {
    if let Some(st) = fdtable::get(fd) {
        return Some(st);
    }
    let st = recognize::recognize(fd)?;
    listeners::release_state(fdtable::set(fd, st));
    Some(st)
}

unsafe fn on_socket(real: socket::Fn, domain: c_int, ty: c_int, protocol: c_int) -> Outcome {
    // SAFETY: integer arguments only.
    let fd = unsafe { real(domain, ty, protocol) };
    if fd >= 0 {
        forget(fd);
    }
    Outcome::Done(fd)
}

unsafe fn on_bind(_real: bind::Fn, fd: c_int, addr: *const sockaddr, len: socklen_t) -> Outcome {
    // SAFETY: bind(2)'s contract: `addr` points to `len` readable bytes.
    match unsafe { read_inet(addr, len) } {
        Some(addr) => convert::bind(fd, addr),
        None => Outcome::Pass(Pass::NotInet),
    }
}

/// listen() on a converted socket announces it: this process's own (its
/// slot), or one it inherited before anyone listened (exec'd workers).
unsafe fn on_listen(real: listen::Fn, fd: c_int, backlog: c_int) -> Outcome {
    let Some(st) = state_or_recognize(fd).filter(|s| s.kind == Kind::Listener) else {
        return Outcome::Pass(Pass::NotOurs);
    };
    // SAFETY: integer arguments only.
    let r = unsafe { real(fd, unix_backlog(backlog)) };
    if r == 0 && st.listener != 0 {
        announce::announce(fd, st.listener);
    } else if r == 0 {
        announce::announce_inherited(fd, st.local);
    }
    Outcome::Done(r)
}

/// The backlog of a converted listener: at least the system's maximum.
/// A TCP listener absorbs a burst of connections beyond its accept queue in
/// the SYN queue, and clients retransmit SYNs the kernel dropped; a Unix
/// listener has neither, so a full queue fails the router's connect at once
/// (`python3 -m http.server` asks for 5). The kernel caps the value at
/// `net.core.somaxconn` (Linux) / `kern.ipc.somaxconn` (macOS); a negative
/// backlog already means that maximum.
pub fn unix_backlog(backlog: c_int) -> c_int {
    if backlog < 0 { backlog } else { backlog.max(c_int::from(u16::MAX)) }
}

unsafe fn on_connect(_real: connect::Fn, fd: c_int, addr: *const sockaddr, len: socklen_t) -> Outcome {
    // SAFETY: connect(2)'s contract: `addr` points to `len` readable bytes.
    match unsafe { read_inet(addr, len) } {
        Some(addr) => redirect::connect(fd, addr),
        None => Outcome::Pass(Pass::NotInet),
    }
}

unsafe fn on_accept(real: accept::Fn, fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> Outcome {
    // SAFETY: accept(2)'s contract for the out-parameters.
    let out = unsafe { OutAddr::new(addr, len) };
    // SAFETY: `a`/`l` describe a buffer owned by `accepted`.
    accepted(fd, &out, |a, l| unsafe { real(fd, a, l) })
}

#[cfg(not(target_vendor = "apple"))]
unsafe fn on_accept4(real: accept4::Fn, fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> Outcome {
    // SAFETY: accept4(2)'s contract for the out-parameters.
    let out = unsafe { OutAddr::new(addr, len) };
    // SAFETY: `a`/`l` describe a buffer owned by `accepted`.
    accepted(fd, &out, |a, l| unsafe { real(fd, a, l, flags) })
}

/// Accepts into a buffer of our own, then reports either the kernel's peer
/// (not ours) or a loopback peer of the listener's original family.
fn accepted(fd: c_int, out: &OutAddr, call: impl FnOnce(*mut sockaddr, *mut socklen_t) -> c_int) -> Outcome {
    let mut name = Name::empty();
    let (a, l) = name.as_mut_ptrs();
    let conn = call(a, l);
    if conn < 0 {
        return Outcome::Done(conn);
    }
    forget(conn);
    let listener =
        if name.family() == libc::AF_UNIX { state_or_recognize(fd).filter(|s| s.kind == Kind::Listener) } else { None };
    let Some(listener) = listener else {
        out.write_raw(&name.storage, name.len);
        return Outcome::Done(conn);
    };
    let peer_port = match clientport::from_name(&name) {
        Some(port) => port,
        None if out.wanted() => sys::inode(conn).map_or(0, port_for_inode),
        None => 0,
    };
    let local = connection_local(listener.local);
    if listener.options.get(libc::SOL_SOCKET, libc::SO_SNDBUF).is_some() {
        sys::tcp_like_send_buffer(conn);
    }
    let state =
        FdState { kind: Kind::Conn, local, peer: loopback_peer(listener.local, peer_port), ..FdState::default() };
    fdtable::set(conn, state);
    if out.wanted() {
        out.write(state.peer);
    }
    Outcome::Done(conn)
}

/// The peer of a connection to a listener, as TCP would report it: loopback
/// of its family, and `::ffff:127.0.0.1` when it was bound to an
/// IPv4-mapped address (Java's default, `[::ffff:127.0.0.1]`), which only
/// IPv4 clients can reach.
fn loopback_peer(listener: Addr, port: u16) -> Addr {
    match listener.to_std().ip() {
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            let mapped = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped();
            Addr::from_std(std::net::SocketAddr::new(mapped.into(), port))
        }
        _ => Addr::loopback(listener.family(), port),
    }
}

/// The local address of a connection to a listener: its address, or
/// loopback when it was bound to the wildcard.
fn connection_local(listener: Addr) -> Addr {
    if listener.to_std().ip().is_unspecified() { Addr::loopback(listener.family(), listener.port) } else { listener }
}

unsafe fn on_getsockname(real: getsockname::Fn, fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> Outcome {
    // SAFETY: getsockname(2)'s contract for the out-parameters.
    let out = unsafe { OutAddr::new(addr, len) };
    if !out.wanted() {
        return Outcome::Pass(Pass::NotOurs);
    }
    if let Some(st) = fdtable::get(fd) {
        out.write(st.local);
        return Outcome::Done(0);
    }
    let mut name = Name::empty();
    let (a, l) = name.as_mut_ptrs();
    // SAFETY: `a`/`l` describe `name`'s storage.
    let r = unsafe { real(fd, a, l) };
    if r < 0 {
        return Outcome::Done(r);
    }
    match (name.family() == libc::AF_UNIX).then(|| state_or_recognize(fd)).flatten() {
        Some(st) => out.write(st.local),
        None => out.write_raw(&name.storage, name.len),
    }
    Outcome::Done(0)
}

unsafe fn on_getpeername(real: getpeername::Fn, fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> Outcome {
    // SAFETY: getpeername(2)'s contract for the out-parameters.
    let out = unsafe { OutAddr::new(addr, len) };
    if !out.wanted() {
        return Outcome::Pass(Pass::NotOurs);
    }
    if let Some(st) = fdtable::get(fd).filter(|s| s.kind != Kind::Listener) {
        if st.reset {
            return Outcome::Done(errno::fail(libc::ENOTCONN));
        }
        out.write(peer_of(fd, st));
        return Outcome::Done(0);
    }
    let mut name = Name::empty();
    let (a, l) = name.as_mut_ptrs();
    // SAFETY: `a`/`l` describe `name`'s storage.
    let r = unsafe { real(fd, a, l) };
    if r < 0 {
        return Outcome::Done(r);
    }
    let ours = (name.family() == libc::AF_UNIX).then(|| state_or_recognize(fd)).flatten();
    match ours.filter(|s| s.kind != Kind::Listener) {
        Some(st) => out.write(peer_of(fd, st)),
        None => out.write_raw(&name.storage, name.len),
    }
    Outcome::Done(0)
}

/// The peer to report, deriving its port on first use.
fn peer_of(fd: c_int, st: FdState) -> Addr {
    if st.peer.port != 0 {
        return st.peer;
    }
    let port = errno::preserve(|| clientport::of_peer(fd).or_else(|| sys::inode(fd).map(port_for_inode)));
    let peer = Addr { port: port.unwrap_or(49152), ..st.peer };
    fdtable::update(fd, |s| s.peer = peer);
    peer
}
