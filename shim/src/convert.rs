//! The core decision: should this TCP bind become a Unix socket, under which
//! name, and does anything already hold that name? The kernel's rules for
//! TCP port conflicts are kept, so apps that probe ports (Vite's "5173 in
//! use, trying 5174") see the errors they expect:
//! - a port this process already holds conflicts as TCP would (same family
//!   and overlapping address without SO_REUSEPORT on both, or a dual-stack
//!   `::` with an IPv4 bind); a non-conflicting second bind (v4 + v6-only,
//!   two SO_REUSEPORT sockets) gets a replica name;
//! - a port another live process of the instance holds is EADDRINUSE, unless
//!   the instance runs replicas (`agentfs wrap --replica`);
//! - a socket file whose process is gone is stale and replaced.
//!
//! Between bind and listen (no sidecar yet) a claim file names the binding
//! process, so a socket that is merely not listening yet is never taken
//! (`agentfs_registry::claim`, shared with the wrapper's seccomp supervisor).

use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use libc::c_int;

use agentfs_registry::{SocketName, claim, scan, sunpath::SockPath};

use crate::config::{self, Identity};
use crate::fdtable::{self, FdState, Kind};
use crate::guard::{Outcome, Pass};
use crate::listeners::{self, Listener};
use crate::log::decision;
use crate::sockaddr::{self, Addr};
use crate::{errno, swap, sys};

/// Why a conversion did not happen.
enum Refusal {
    /// Answer the app with this errno, as TCP would.
    Errno(c_int),
    /// Something went wrong: the original bind happens instead (fail open).
    Failed(String),
}

impl From<String> for Refusal {
    fn from(why: String) -> Refusal {
        Refusal::Failed(why)
    }
}

impl From<&str> for Refusal {
    fn from(why: &str) -> Refusal {
        Refusal::Failed(why.to_owned())
    }
}

/// bind() of `fd` to `addr`.
pub fn bind(fd: c_int, addr: SocketAddr) -> Outcome {
    let Some(id) = config::identity() else { return Outcome::Pass(Pass::NoApp) };
    let pass = |why: Pass| {
        decision!(fd, "bind {addr}: passed through ({})", why.describe());
        Outcome::Pass(why)
    };
    if addr.port() == 0 {
        return pass(Pass::PortZero);
    }
    if !sockaddr::is_convertible(addr.ip()) {
        return pass(Pass::NotLoopback);
    }
    if !id.port_allowed(addr.port()) {
        return pass(Pass::Skipped);
    }
    if sys::socket_type(fd) != Some(libc::SOCK_STREAM) {
        return pass(Pass::NotStream);
    }
    // The socket itself must be an unbound TCP socket of the address's
    // family; anything else gets the kernel's own answer.
    match sys::sock_name(fd).and_then(|n| n.inet()) {
        Some(own) if own.is_ipv6() == addr.is_ipv6() && own.port() == 0 => {}
        _ => return Outcome::Pass(Pass::NotOurs),
    }
    if crate::tcpheld::held_here(fd, addr) || crate::tcpheld::held_by_client(fd, addr) {
        decision!(fd, "bind {addr}: refused with EADDRINUSE: this process holds the port on TCP");
        return Outcome::Done(errno::fail(libc::EADDRINUSE));
    }
    match place(fd, id, addr) {
        Ok(path) => {
            decision!(fd, "bind {addr}: converted to {}", path.display());
            Outcome::Done(0)
        }
        Err(Refusal::Errno(e)) => {
            decision!(fd, "bind {addr}: refused with errno {e}, as TCP would");
            Outcome::Done(errno::fail(e))
        }
        Err(Refusal::Failed(why)) => {
            decision!(fd, "bind {addr}: {why}; passed through (fail open)");
            Outcome::Pass(Pass::Failed)
        }
    }
}

static HOME_READY: AtomicBool = AtomicBool::new(false);

fn ensure_home(id: &Identity) -> Result<(), Refusal> {
    if HOME_READY.load(Ordering::Acquire) {
        return Ok(());
    }
    id.home.ensure().map_err(|e| Refusal::Failed(e.to_string()))?;
    HOME_READY.store(true, Ordering::Release);
    Ok(())
}

fn place(fd: c_int, id: &Identity, addr: SocketAddr) -> Result<PathBuf, Refusal> {
    ensure_home(id)?;
    let rep = swap::prepare(fd, addr.is_ipv6())?;
    let local = Addr::from_std(addr);
    for _attempt in 0..3 {
        let name = choose_name(id, local, rep.v6only, rep.reuseport)?;
        let path = scan::socket_path(&id.run_dir, &name.stem_in(&id.run_dir));
        let Some(claim_file) = claim::claim_path(&path) else { return Err("socket path has no file name".into()) };
        let Some(claim) = claim::Claim::take(&claim_file, std::process::id(), addr)? else { continue };
        match bind_unix(rep.new.raw(), &path) {
            Ok(()) => return record(fd, rep, path, local).inspect(|_| claim.keep()),
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
            Err(e) => return Err(Refusal::Failed(format!("cannot bind {}: {e}", path.display()))),
        }
    }
    Err("the socket name kept being taken by other processes".into())
}

/// Records the new listener and puts it in place under the app's fd.
fn record(fd: c_int, rep: swap::Replacement, path: PathBuf, local: Addr) -> Result<PathBuf, Refusal> {
    let undo = |why: &str| {
        let _ = std::fs::remove_file(&path);
        Refusal::Failed(why.to_owned())
    };
    let Some(listener) = Listener::new(path.as_os_str().as_bytes(), local, rep.v6only, rep.reuseport) else {
        return Err(undo("socket path too long to track"));
    };
    let Some(slot) = listeners::add(listener) else {
        return Err(undo("too many listening sockets in one process"));
    };
    let options = rep.options;
    if rep.commit().is_err() {
        listeners::forget(slot);
        return Err(undo("cannot put the Unix socket in place (dup3)"));
    }
    let state = FdState { kind: Kind::Listener, local, listener: slot, options, ..FdState::default() };
    listeners::release_state(fdtable::set(fd, state));
    Ok(path)
}

fn bind_unix(fd: c_int, path: &Path) -> io::Result<()> {
    let target = SockPath::new(path)?;
    let (un, len) = sockaddr::unix(target.as_path().as_os_str().as_bytes())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path does not fit sun_path"))?;
    // SAFETY: `un` is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd, (&raw const un).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

static REPLICA_N: AtomicU32 = AtomicU32::new(1);

fn replica_name(id: &Identity, port: u16) -> SocketName {
    let n = REPLICA_N.fetch_add(1, Ordering::Relaxed);
    SocketName::new(id.app.clone(), id.instance.clone(), port).with_replica(std::process::id(), n)
}

fn choose_name(id: &Identity, local: Addr, v6only: bool, reuseport: bool) -> Result<SocketName, Refusal> {
    let mut ours = false;
    for (slot, held) in listeners::find(|l| l.local.port == local.port) {
        if !still_open(slot, &held) {
            continue;
        }
        if conflicts(&held, local, v6only, reuseport) {
            return Err(Refusal::Errno(libc::EADDRINUSE));
        }
        ours = true;
    }
    if ours {
        return Ok(replica_name(id, local.port));
    }
    let canonical = SocketName::new(id.app.clone(), id.instance.clone(), local.port);
    match claim::name_is_free(&id.run_dir, &canonical.stem_in(&id.run_dir), std::process::id(), sys::unix_accepts) {
        Ok(true) => Ok(canonical),
        Ok(false) if id.replica => Ok(replica_name(id, local.port)),
        Ok(false) => Err(Refusal::Errno(libc::EADDRINUSE)),
        Err(why) => Err(Refusal::Failed(why)),
    }
}

/// Whether a listener this process recorded still has an open descriptor
/// bound to its file. One that has none was closed behind the shim's back
/// (raw close): it is forgotten, with the descriptor entries naming it.
fn still_open(slot: u16, held: &Listener) -> bool {
    let base = held.path().rsplit(|b| *b == b'/').next().unwrap_or_default().to_vec();
    let mut open = false;
    let mut stale = Vec::new();
    fdtable::tracked_in(0, fdtable::MAX_FD as c_int - 1, |fd, st| {
        if st.listener != slot {
            return;
        }
        let name = sys::sock_name(fd);
        let bound = name.as_ref().and_then(|n| n.unix_path()).is_some_and(|p| p.ends_with(&base));
        if bound { open = true } else { stale.push(fd) }
    });
    if !open {
        for fd in stale {
            fdtable::take(fd);
        }
        listeners::forget(slot);
    }
    open
}

/// TCP's conflict rules between a held listener and a new bind of its port.
fn conflicts(held: &Listener, new: Addr, new_v6only: bool, new_reuseport: bool) -> bool {
    if held.reuseport && new_reuseport {
        return false;
    }
    let wildcard = |a: &Addr| a.to_std().ip().is_unspecified();
    if held.local.v6 == new.v6 {
        return wildcard(&held.local) || wildcard(&new) || held.local.ip == new.ip;
    }
    // An IPv6 wildcard that is not v6-only also holds the IPv4 port.
    let (v6, v6only) = if held.local.v6 { (&held.local, held.v6only) } else { (&new, new_v6only) };
    wildcard(v6) && !v6only
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(addr: &str, v6only: bool, reuseport: bool) -> Listener {
        let local = Addr::from_std(addr.parse().unwrap());
        Listener {
            used: true,
            pid: 1,
            file: crate::sockfile::SockFile::EMPTY,
            local,
            v6only,
            reuseport,
            announced: false,
        }
    }
    fn a(s: &str) -> Addr {
        Addr::from_std(s.parse().unwrap())
    }

    #[test]
    fn tcp_conflict_rules() {
        // Same family.
        assert!(conflicts(&held("0.0.0.0:80", false, false), a("127.0.0.1:80"), false, false));
        assert!(conflicts(&held("127.0.0.1:80", false, false), a("127.0.0.1:80"), false, false));
        assert!(!conflicts(&held("127.0.0.1:80", false, false), a("127.0.0.2:80"), false, false));
        assert!(!conflicts(&held("0.0.0.0:80", false, true), a("0.0.0.0:80"), false, true), "reuseport pair");
        assert!(conflicts(&held("0.0.0.0:80", false, true), a("0.0.0.0:80"), false, false));
        // Dual stack.
        assert!(conflicts(&held("[::]:80", false, false), a("0.0.0.0:80"), false, false));
        assert!(!conflicts(&held("[::]:80", true, false), a("0.0.0.0:80"), false, false), "v6only");
        assert!(conflicts(&held("0.0.0.0:80", false, false), a("[::]:80"), false, false));
        assert!(!conflicts(&held("0.0.0.0:80", false, false), a("[::]:80"), true, false));
        assert!(!conflicts(&held("127.0.0.1:80", false, false), a("[::1]:80"), false, false));
    }
}
