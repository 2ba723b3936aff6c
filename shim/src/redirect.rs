//! connect() from inside an instance to loopback:<port> goes to that
//! instance's own converted listener on <port>: a front end calling its back
//! end on 127.0.0.1:8080 keeps working, and two forks never reach each
//! other's back end. Connects with no such listener are left alone.

use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use libc::c_int;

use agentfs_registry::runfile::RunFile;
use agentfs_registry::{SocketName, scan, sunpath::SockPath};

use crate::config::{self, Identity};
use crate::fdtable::{self, FdState, Kind};
use crate::guard::{Outcome, Pass};
use crate::log::decision;
use crate::sockaddr::{self, Addr};
use crate::{listeners, recognize, swap, sys};

/// connect() of `fd` to `addr`.
pub fn connect(fd: c_int, addr: SocketAddr) -> Outcome {
    let Some(id) = config::identity() else { return Outcome::Pass(Pass::NoApp) };
    if addr.port() == 0 || !sockaddr::is_loopback(addr.ip()) {
        return Outcome::Pass(Pass::NotLoopback);
    }
    let Some(path) = target(id, addr.port()) else {
        decision!(fd, "connect {addr}: passed through ({})", Pass::NoListener.describe());
        return Outcome::Pass(Pass::NoListener);
    };
    if sys::socket_type(fd) != Some(libc::SOCK_STREAM) {
        return Outcome::Pass(Pass::NotStream);
    }
    match sys::sock_name(fd).and_then(|n| n.inet()) {
        Some(own) if own.is_ipv6() == addr.is_ipv6() && own.port() == 0 => {}
        _ => return Outcome::Pass(Pass::NotOurs),
    }
    match redirect(fd, addr, &path) {
        Ok(()) => {
            decision!(fd, "connect {addr}: redirected to {}", path.display());
            Outcome::Done(0)
        }
        Err(why) => {
            decision!(fd, "connect {addr}: {why}; passed through");
            Outcome::Pass(Pass::Failed)
        }
    }
}

fn redirect(fd: c_int, addr: SocketAddr, path: &Path) -> Result<(), String> {
    let rep = swap::prepare(fd, addr.is_ipv6()).map_err(str::to_owned)?;
    connect_unix(rep.new.raw(), path).map_err(|e| format!("{}: {e}", path.display()))?;
    let family = Addr::from_std(addr).family();
    let local = Addr::loopback(family, sys::inode(rep.new.raw()).map_or(0, recognize::port_for_inode));
    let options = rep.options;
    rep.commit().map_err(|e| format!("cannot put the Unix socket in place: errno {e}"))?;
    let state = FdState { kind: Kind::Client, local, peer: Addr::from_std(addr), options, listener: 0 };
    listeners::release_state(fdtable::set(fd, state));
    Ok(())
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

/// The instance's socket for `port`: the canonical one, else a replica.
fn target(id: &Identity, port: u16) -> Option<PathBuf> {
    let canonical = SocketName::new(id.app.clone(), id.instance.clone(), port);
    let path = scan::socket_path(&id.run_dir, &canonical.stem_in(&id.run_dir));
    if is_socket(&path) {
        return Some(path);
    }
    let entries = std::fs::read_dir(&id.run_dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        matches!(RunFile::classify(name), RunFile::Socket(n)
            if n.app == id.app && n.instance == id.instance && n.port == port)
            && is_socket(p)
    })
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
