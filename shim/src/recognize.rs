//! Descriptors that reach a process without the shim's bookkeeping — across
//! exec, over SCM_RIGHTS (Node cluster workers), or after a close the shim
//! did not see — are recognised by asking the kernel for their Unix name: a
//! socket file under `run/` with a sidecar (only the shim writes them, after
//! listen) is ours, and the sidecar says which TCP address to report; one
//! bound but not yet listening (uvicorn binds in its parent and listens in
//! spawned workers) has its binder's claim, which names the address. A Unix
//! socket the app made itself there (binding `$AGENTFS_SOCKET`) has no
//! sidecar and stays what it is.

use std::net::SocketAddr;
use std::path::Path;

use libc::c_int;

use agentfs_registry::record::{self, Sidecar};
use agentfs_registry::runfile::RunFile;
use agentfs_registry::{liveness, scan};

use crate::fdtable::{FdState, Kind};
use crate::sockaddr::Addr;
use crate::sys;
use crate::{clientport, config};

/// The port reported for the far end of a converted connection: stable for
/// the socket (derived from its inode, so every process that holds it agrees)
/// and in the ephemeral range, like a real client port.
pub fn port_for_inode(ino: u64) -> u16 {
    49152 + (ino % 16384) as u16
}

/// What the shim should report for `fd`, if it is one of ours.
pub fn recognize(fd: c_int) -> Option<FdState> {
    let run_dir = config::get()?.home.as_ref()?.run_dir();
    let own = sys::sock_name(fd)?;
    if own.family() != libc::AF_UNIX {
        return None;
    }
    let ino = || sys::inode(fd).map_or(0, port_for_inode);
    if let Some(path) = own.unix_path() {
        let local = bound_addr(&run_dir, stem_in_run(path, &run_dir)?)?;
        let family = local.family();
        // Listening, or bound and not yet listening (no peer): a listener.
        if sys::is_listening(fd) || sys::peer_name(fd).is_none() {
            return Some(FdState { kind: Kind::Listener, local, ..FdState::default() });
        }
        let peer = Addr::loopback(family, clientport::of_peer(fd).unwrap_or_else(ino));
        return Some(FdState {
            kind: Kind::Conn,
            local: Addr::loopback(family, local.port),
            peer,
            ..FdState::default()
        });
    }
    let theirs = sys::peer_name(fd)?;
    let server = bound_addr(&run_dir, stem_in_run(theirs.unix_path()?, &run_dir)?)?;
    let family = server.family();
    let peer = Addr::loopback(family, server.port);
    let local = Addr::loopback(family, clientport::from_name(&own).unwrap_or_else(ino));
    Some(FdState { kind: Kind::Client, local, peer, ..FdState::default() })
}

/// The stem of a socket file in `run_dir`, from the kernel's name for it
/// (the path bound, or its `/proc/self/fd/<n>/` alias).
fn stem_in_run<'a>(path: &'a [u8], run_dir: &Path) -> Option<&'a str> {
    let path = std::str::from_utf8(path).ok()?;
    let (dir, file) = path.rsplit_once('/')?;
    let in_run =
        Path::new(dir) == run_dir || dir.strip_prefix("/proc/self/fd/").is_some_and(|n| n.parse::<u32>().is_ok());
    if !in_run {
        return None;
    }
    match RunFile::classify(file) {
        RunFile::Socket(_) | RunFile::HashedSocket(_) => file.strip_suffix(".sock"),
        _ => None,
    }
}

/// The address the app bound, from the socket's sidecar, or, before any
/// process has listened on it, from the claim of the process that bound it
/// (alive: a claim outlives its process only until the next bind sweeps it).
fn bound_addr(run_dir: &Path, stem: &str) -> Option<Addr> {
    if let Ok(sc) = record::read::<Sidecar>(&scan::sidecar_path(run_dir, stem)) {
        return Some(Addr::from_std(SocketAddr::new(sc.addr, sc.port)));
    }
    let (pid, addr) = scan::read_claim(&scan::claim_path(run_dir, stem))?;
    addr.filter(|_| liveness::pid_alive(pid)).map(Addr::from_std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_only_for_our_sockets() {
        let run = Path::new("/home/u/.agentfs/run");
        assert_eq!(stem_in_run(b"/home/u/.agentfs/run/shop.main.3000.sock", run), Some("shop.main.3000"));
        assert_eq!(stem_in_run(b"/proc/self/fd/7/shop.main.3000.1-2.sock", run), Some("shop.main.3000.1-2"));
        let hashed = agentfs_registry::runfile::hashed_stem("x");
        let p = format!("/home/u/.agentfs/run/{hashed}.sock");
        assert_eq!(stem_in_run(p.as_bytes(), run), Some(hashed.as_str()));
        assert_eq!(stem_in_run(b"/tmp/shop.main.3000.sock", run), None);
        assert_eq!(stem_in_run(b"/home/u/.agentfs/run/other.sock", run), None);
        assert_eq!(stem_in_run(b"/proc/self/fd/x/shop.main.3000.sock", run), None);
    }

    #[test]
    fn inode_ports_are_ephemeral() {
        for ino in [0, 1, 16383, 16384, u64::MAX] {
            assert!(port_for_inode(ino) >= 49152);
        }
    }
}
