//! Taking a name in `run/` for a new listener, shared by the shim (which
//! converts binds inside the app) and the wrapper's seccomp supervisor
//! (which converts binds of programs the shim cannot enter):
//! - whether the canonical `<app>.<instance>.<port>` is free: nothing there,
//!   or only what a gone process left (removed then), or held by a live one;
//! - the claim `.<stem>.claim` (`<pid>\n<addr>\n`, created exclusively, mode
//!   0600) that holds the name from before the bind until the sidecar says
//!   the socket listens, so a socket that is merely not listening yet is never
//!   taken.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::record::{self, Sidecar};
use crate::{liveness, scan};

/// `<dir>/.<stem>.claim` for a socket path.
pub fn claim_path(socket: &Path) -> Option<PathBuf> {
    let stem = socket.file_stem()?.to_str()?;
    Some(socket.with_file_name(format!(".{stem}.claim")))
}

/// A claim naming another process than `me` that is alive.
/// Never blocks or follows: a FIFO or symlink there is no claim.
pub fn claimed_by_other(claim: &Path, me: u32) -> bool {
    let pid = scan::read_claim(claim).map(|(pid, _)| pid);
    pid.is_some_and(|p| p != me && liveness::pid_alive(p))
}

/// Whether the name `stem` is free for process `me`: `Ok(true)` when nothing
/// holds it (stale files of a gone holder are removed), `Ok(false)` when a
/// live process does (a claim of another live process; a socket whose
/// sidecar names a live process and that `accepts`; a TCP route of another
/// live process), `Err` naming the problem otherwise.
pub fn name_is_free(run_dir: &Path, stem: &str, me: u32, accepts: impl Fn(&Path) -> bool) -> Result<bool, String> {
    let path = scan::socket_path(run_dir, stem);
    let claim = scan::claim_path(run_dir, stem);
    let sidecar = record::read::<Sidecar>(&scan::sidecar_path(run_dir, stem)).ok();
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let tcp_held = sidecar.is_some_and(|sc| sc.tcp.is_some() && sc.pid != me && liveness::pid_alive(sc.pid));
            return Ok(!claimed_by_other(&claim, me) && !tcp_held);
        }
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
        Ok(m) if !m.file_type().is_socket() => return Err(format!("{} exists and is not a socket", path.display())),
        Ok(_) => {}
    }
    let alive = match &sidecar {
        Some(sc) if sc.pid != me && !liveness::pid_alive(sc.pid) => false,
        _ => accepts(&path),
    };
    if claimed_by_other(&claim, me) || alive {
        return Ok(false);
    }
    for stale in [scan::sidecar_path(run_dir, stem), path, claim] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(format!("cannot remove stale {}: {e}", stale.display()));
            }
            _ => {}
        }
    }
    Ok(true)
}

/// A process's hold on a socket name from before its bind until its sidecar
/// is written: `.<stem>.claim` holding the pid and the address bound. The
/// address lets another process that inherits the socket before it listens
/// (uvicorn's spawned workers) recognise it. Dropped (and removed) unless kept.
#[derive(Debug)]
pub struct Claim(Option<PathBuf>);

impl Claim {
    /// Takes the claim at `path` for `pid`; `None` when another live process holds it.
    pub fn take(path: &Path, pid: u32, addr: SocketAddr) -> Result<Option<Claim>, String> {
        for _ in 0..2 {
            let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
            match created {
                Ok(mut f) => {
                    use std::io::Write;
                    let _ = write!(f, "{pid}\n{addr}\n");
                    return Ok(Some(Claim(Some(path.to_owned()))));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if claimed_by_other(path, pid) {
                        return Ok(None);
                    }
                    let _ = std::fs::remove_file(path);
                }
                Err(e) => return Err(format!("cannot claim {}: {e}", path.display())),
            }
        }
        Ok(None)
    }

    /// Leaves the claim in place (removed once the socket listens or closes).
    pub fn keep(mut self) {
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

    #[test]
    fn a_name_is_free_held_or_stale() {
        let dir = std::env::temp_dir().join(format!("agentfs-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        assert_eq!(name_is_free(&dir, "a.b.1", me, |_| true), Ok(true));
        let claim = scan::claim_path(&dir, "a.b.1");
        let held = Claim::take(&claim, me, "127.0.0.1:1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(scan::read_claim(&claim).map(|c| c.0), Some(me));
        assert_eq!(name_is_free(&dir, "a.b.1", me, |_| true), Ok(true), "our own claim");
        assert!(Claim::take(&claim, 1, "127.0.0.1:1".parse().unwrap()).unwrap().is_none(), "pid 1 sees ours");
        assert_eq!(name_is_free(&dir, "a.b.1", 1, |_| true), Ok(false), "held for another process");
        drop(held);
        assert!(!claim.exists());
        let sock = scan::socket_path(&dir, "a.b.1");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(name_is_free(&dir, "a.b.1", me, |_| true), Ok(false), "a socket that accepts");
        assert_eq!(name_is_free(&dir, "a.b.1", me, |_| false), Ok(true), "a dead socket is removed");
        assert!(!sock.exists());
        std::fs::write(&sock, b"x").unwrap();
        assert!(name_is_free(&dir, "a.b.1", me, |_| false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
