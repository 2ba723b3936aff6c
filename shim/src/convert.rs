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
//! process, so a socket that is merely not listening yet is never taken.

use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use libc::c_int;

use agentfs_registry::record::{self, Sidecar};
use agentfs_registry::{SocketName, liveness, scan, sunpath::SockPath};

use crate::config::{self, Identity};
use crate::fdtable::{self, FdState, Kind};
use crate::guard::{Outcome, Pass};
use crate::listeners::{self, Listener};
use crate::log::decision;
use crate::sockaddr::{self, Addr};
use crate::sockfile::claim_path;
use crate::{errno, swap, sys};

/// Why a conversion did not happen.
enum Refusal {
    /// Answer the app with this errno, as TCP would.
    Errno(c_int),
    /// Something went wrong: the original bind happens instead (fail open).
    Failed(String),
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
        let Some(claim) = Claim::take(&path, addr)? else { continue };
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
    let stem = canonical.stem_in(&id.run_dir);
    let path = scan::socket_path(&id.run_dir, &stem);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !claimed_by_other(&path) => return Ok(canonical),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return if id.replica { Ok(replica_name(id, local.port)) } else { Err(Refusal::Errno(libc::EADDRINUSE)) };
        }
        Err(e) => return Err(Refusal::Failed(format!("cannot inspect {}: {e}", path.display()))),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(Refusal::Failed(format!("{} exists and is not a socket", path.display())));
        }
        Ok(_) => {}
    }
    if holder_alive(&id.run_dir, &stem, &path) {
        return if id.replica { Ok(replica_name(id, local.port)) } else { Err(Refusal::Errno(libc::EADDRINUSE)) };
    }
    let claim = claim_path(&path).unwrap_or_default();
    for stale in [scan::sidecar_path(&id.run_dir, &stem), path, claim] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Refusal::Failed(format!("cannot remove stale {}: {e}", stale.display())));
            }
            _ => {}
        }
    }
    Ok(canonical)
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

/// Whether the process behind an existing socket file is still there. A
/// claim names a live process between its bind and its listen; a sidecar
/// names the process that listened, and the socket must still accept (a
/// listener closed behind the shim's back, as a port check does, leaves a
/// sidecar naming a live pid); a bare socket must accept.
fn holder_alive(run_dir: &Path, stem: &str, path: &Path) -> bool {
    if claimed_by_other(path) {
        return true;
    }
    match record::read::<Sidecar>(&scan::sidecar_path(run_dir, stem)) {
        Ok(sc) if sc.pid != std::process::id() && !liveness::pid_alive(sc.pid) => false,
        _ => sys::unix_accepts(path),
    }
}

/// A claim (`.<stem>.claim`) naming another process that is alive.
fn claimed_by_other(socket: &Path) -> bool {
    let Some(claim) = claim_path(socket) else { return false };
    // Never blocks or follows: a FIFO or symlink there is no claim (and is replaced).
    let pid = scan::read_claim(&claim).map(|(pid, _)| pid);
    pid.is_some_and(|p| p != std::process::id() && liveness::pid_alive(p))
}

/// This process's hold on a socket name from before its bind until its
/// sidecar is written: `.<stem>.claim` holding our pid and the address bound,
/// created exclusively. The address lets another process that inherits the
/// socket before it listens (uvicorn's spawned workers) recognise it.
/// Dropped (and removed) unless kept.
struct Claim(Option<PathBuf>);

impl Claim {
    /// Takes the claim; `None` when a live process holds it.
    fn take(socket: &Path, addr: SocketAddr) -> Result<Option<Claim>, Refusal> {
        let Some(path) = claim_path(socket) else { return Err("socket path has no file name".into()) };
        for _ in 0..2 {
            let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
            match created {
                Ok(mut f) => {
                    use std::io::Write;
                    let _ = write!(f, "{}\n{addr}\n", std::process::id());
                    return Ok(Some(Claim(Some(path))));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if claimed_by_other(socket) {
                        return Ok(None);
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(Refusal::Failed(format!("cannot claim {}: {e}", path.display()))),
            }
        }
        Ok(None)
    }

    /// Leaves the claim in place (removed once the socket listens or closes).
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
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
