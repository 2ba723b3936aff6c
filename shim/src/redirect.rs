//! connect() from inside an instance to loopback:<port> goes to that
//! instance's own converted listener on <port> (`targets` picks which, by
//! TCP's family and address rules): a front end calling its back end on
//! 127.0.0.1:8080 keeps working, and two forks never reach each other's back
//! end. Connects with no such listener are left alone.
//!
//! The client may have bound first (a source port, `bindresvport`, a retry
//! after a refused connect): a socket with a kernel port that is not
//! connected is redirected too and keeps reporting its port; one the shim
//! converted at bind (a loopback address with a port) is redirected, or made
//! a TCP socket bound to that address again when nothing of the instance
//! listens there (`unconvert`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libc::c_int;

use agentfs_registry::sunpath::SockPath;

use crate::config::{self, Identity};
use crate::fdtable::{self, FdState, Kind};
use crate::guard::{Outcome, Pass};
use crate::log::decision;
use crate::options::Options;
use crate::sockaddr::{self, Addr};
use crate::{clientport, elsewhere, errno, listeners, recognize, swap, sys, targets, unconvert};

/// connect() of `fd` to `addr`.
pub fn connect(fd: c_int, addr: SocketAddr) -> Outcome {
    let Some(id) = config::identity() else { return Outcome::Pass(Pass::NoApp) };
    let Some(dest) = targets::local_destination(addr).filter(|_| addr.port() != 0) else {
        return Outcome::Pass(Pass::NotLoopback);
    };
    if let Some(st) = fdtable::get(fd) {
        return tracked(fd, id, addr, dest, st);
    }
    let Some(path) = targets::find(id, dest) else {
        if elsewhere::held_by_another_instance(id, dest.port()) {
            return refused(fd, addr);
        }
        decision!(fd, "connect {addr}: passed through ({})", Pass::NoListener.describe());
        return Outcome::Pass(Pass::NoListener);
    };
    if sys::socket_type(fd) != Some(libc::SOCK_STREAM) {
        return Outcome::Pass(Pass::NotStream);
    }
    let Some(bound) = unconvert::unconnected_inet(fd, addr.is_ipv6()) else { return Outcome::Pass(Pass::NotOurs) };
    let bound = (bound.port() != 0).then_some(bound);
    if taken(bound, dest) {
        return Outcome::Done(errno::fail(libc::EADDRNOTAVAIL));
    }
    finish(fd, addr, redirect(fd, dest, &path, bound, None))
}

/// connect() of a socket the shim already tracks: one converted at bind
/// (not listening) becomes a client; connected ones answer as TCP would.
fn tracked(fd: c_int, id: &Identity, addr: SocketAddr, dest: SocketAddr, st: FdState) -> Outcome {
    if st.kind != Kind::Listener || sys::is_listening(fd) {
        return Outcome::Done(errno::fail(libc::EISCONN));
    }
    let bound = st.local.to_std();
    match targets::find(id, dest) {
        Some(_) if taken(Some(bound), dest) => Outcome::Done(errno::fail(libc::EADDRNOTAVAIL)),
        Some(path) => finish(fd, addr, redirect(fd, dest, &path, Some(bound), Some(st.options))),
        None if elsewhere::held_by_another_instance(id, dest.port()) => refused(fd, addr),
        None => match unconvert::back_to_tcp(fd, st) {
            Ok(()) => {
                decision!(fd, "connect {addr}: bound {bound} made TCP again (no listener of this instance there)");
                Outcome::Pass(Pass::NoListener)
            }
            Err(e) => {
                decision!(fd, "connect {addr}: cannot bind {bound} on TCP again: errno {e}");
                Outcome::Done(errno::fail(e))
            }
        },
    }
}

/// Another instance's port: refused as if this instance ran alone (see `elsewhere`).
fn refused(fd: c_int, addr: SocketAddr) -> Outcome {
    decision!(fd, "connect {addr}: refused (another instance holds port {}, this one does not)", addr.port());
    Outcome::Done(errno::fail(libc::ECONNREFUSED))
}

fn finish(fd: c_int, addr: SocketAddr, done: Result<PathBuf, String>) -> Outcome {
    match done {
        Ok(path) => {
            decision!(fd, "connect {addr}: redirected to {}", path.display());
            Outcome::Done(0)
        }
        Err(why) => {
            decision!(fd, "connect {addr}: {why}; passed through");
            Outcome::Pass(Pass::Failed)
        }
    }
}

/// Puts a Unix replacement of `fd` in place and connects it to `path`.
/// `bound`: the address the client bound (its port is kept); `carried`: the
/// options already stored for `fd`.
///
/// The replacement takes the descriptor number, with its table entry, before
/// it connects: TCP's client is established before the server can accept it,
/// so a thread that looks at the descriptor once `accept()` returned (as
/// CPython's TCPCloserTest does) must find it connected, not the unconnected
/// TCP socket. A failed connect puts the app's socket and entry back.
fn redirect(
    fd: c_int,
    dest: SocketAddr,
    path: &Path,
    bound: Option<SocketAddr>,
    carried: Option<Options>,
) -> Result<PathBuf, String> {
    let rep = swap::prepare(fd, dest.is_ipv6()).map_err(str::to_owned)?;
    let port = match bound {
        Some(b) if b.port() != 0 => b.port(),
        _ => sys::inode(rep.new.raw()).map_or(0, recognize::port_for_inode),
    };
    clientport::bind(rep.new.raw(), port);
    let local = Addr::from_std(SocketAddr::new(source_ip(bound.map(|b| b.ip()), dest), port));
    let mut options = carried.unwrap_or(rep.options);
    if options.get(libc::SOL_SOCKET, libc::SO_SNDBUF).is_some() {
        sys::tcp_like_send_buffer(rep.new.raw());
        if let Ok(v) = sys::getsockopt_int(rep.new.raw(), libc::SOL_SOCKET, libc::SO_SNDBUF) {
            options.set(libc::SOL_SOCKET, libc::SO_SNDBUF, &v.to_ne_bytes());
        }
    }
    let kept = rep.commit_keeping().map_err(|e| format!("cannot put the Unix socket in place: errno {e}"))?;
    let state = FdState { kind: Kind::Client, local, peer: Addr::from_std(dest), options, ..FdState::default() };
    let before = fdtable::set(fd, state);
    if let Err(e) = connect_unix(fd, path) {
        match before {
            Some(st) => fdtable::set(fd, st),
            None => fdtable::take(fd),
        };
        let back = kept.restore().err().map(|b| format!(" (and the app's socket could not be put back: errno {b})"));
        return Err(format!("{}: {e}{}", path.display(), back.unwrap_or_default()));
    }
    drop(kept);
    listeners::release_state(before);
    Ok(path.to_owned())
}

/// Whether a client of this process already connects from the port bound
/// to `dest` (TCP: EADDRNOTAVAIL, the four-tuple is in use).
fn taken(bound: Option<SocketAddr>, dest: SocketAddr) -> bool {
    let Some(b) = bound.filter(|b| b.port() != 0) else { return false };
    let local = Addr::from_std(SocketAddr::new(source_ip(Some(b.ip()), dest), b.port()));
    crate::tcpheld::connection_exists(local, Addr::from_std(dest))
}

/// The local address TCP would report: the one bound, or loopback in the
/// destination's spelling when none (or the wildcard) was.
fn source_ip(bound: Option<IpAddr>, dest: SocketAddr) -> IpAddr {
    if let Some(ip) = bound.filter(|ip| !ip.is_unspecified()) {
        return ip;
    }
    match dest.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// How long a redirected connect may wait for room in a full backlog.
const FULL_BACKLOG_WAIT: libc::timeval = libc::timeval { tv_sec: 0, tv_usec: 250_000 };

/// Connects. A non-blocking Unix connect to a full backlog fails with EAGAIN,
/// which TCP callers do not expect; it is retried blocking, but for at most
/// [`FULL_BACKLOG_WAIT`] (the accepting code may run on the caller's own
/// thread), after which the original TCP connect is made (fail open).
fn connect_unix(fd: c_int, path: &Path) -> io::Result<()> {
    let target = SockPath::new(path)?;
    let (un, len) = sockaddr::unix(target.as_path().as_os_str().as_bytes())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path does not fit sun_path"))?;
    let attempt = || {
        // SAFETY: `un` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::connect(fd, (&raw const un).cast(), len) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    match attempt() {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => bounded_wait(fd, attempt),
        other => other,
    }
}

fn bounded_wait(fd: c_int, attempt: impl Fn() -> io::Result<()>) -> io::Result<()> {
    let os = io::Error::from_raw_os_error;
    let flags = sys::fcntl_get(fd, libc::F_GETFL).map_err(os)?;
    let mut saved = [0u8; std::mem::size_of::<libc::timeval>()];
    let n = sys::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &mut saved).map_err(os)?;
    let limit = FULL_BACKLOG_WAIT;
    // SAFETY: timeval is plain data; viewing it as bytes for its size is sound.
    let wait =
        unsafe { std::slice::from_raw_parts((&raw const limit).cast::<u8>(), std::mem::size_of::<libc::timeval>()) };
    sys::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, wait).map_err(os)?;
    sys::fcntl_set(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK).map_err(os)?;
    let r = attempt();
    let _ = sys::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &saved[..n]);
    sys::fcntl_set(fd, libc::F_SETFL, flags).map_err(os)?;
    r
}
