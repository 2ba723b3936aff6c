//! Which of the instance's listeners a loopback connect reaches, by the
//! kernel's rules for TCP: the port and the family must match, and the
//! address too unless the listener is on the wildcard. A connect to
//! `[::1]:P` never reaches an IPv4-only listener on P, a connect to
//! `127.0.0.1:P` reaches an IPv4 listener before a dual-stack `[::]` one, and
//! `0.0.0.0`/`[::]` as a destination mean this host (Linux delivers them to
//! loopback). The rules themselves are `agentfs_registry::reach`.

use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use agentfs_registry::record::{self, Sidecar};
use agentfs_registry::runfile::RunFile;
use agentfs_registry::{SocketName, scan};

use crate::config::Identity;

pub use agentfs_registry::reach::{local_destination, reach};

/// The instance's socket that a connect to `dest` reaches: the best match
/// by [`reach`]; a socket without a sidecar yet (bound, listen() under way)
/// only when nothing else matches.
pub fn find(id: &Identity, dest: SocketAddr) -> Option<PathBuf> {
    let port = dest.port();
    let canonical = SocketName::new(id.app.clone(), id.instance.clone(), port).stem_in(&id.run_dir);
    let mut best: Option<(u8, PathBuf)> = None;
    match judge(&id.run_dir, &canonical, dest) {
        Some(3) => return Some(scan::socket_path(&id.run_dir, &canonical)),
        Some(score) => best = Some((score, scan::socket_path(&id.run_dir, &canonical))),
        None => {}
    }
    let entries = std::fs::read_dir(&id.run_dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".sock")) else { continue };
        if stem == canonical || !might_be(id, port, name.to_str().unwrap_or_default()) {
            continue;
        }
        let Some(score) = judge(&id.run_dir, stem, dest) else { continue };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, scan::socket_path(&id.run_dir, stem)));
        }
    }
    best.map(|(_, p)| p)
}

/// A socket file name that may be one of the instance's on `port` (hashed
/// names are told by their sidecar).
fn might_be(id: &Identity, port: u16, file: &str) -> bool {
    match RunFile::classify(file) {
        RunFile::Socket(n) => n.app == id.app && n.instance == id.instance && n.port == port,
        RunFile::HashedSocket(_) => true,
        _ => false,
    }
}

/// The score of the socket `<stem>.sock` for `dest`: by its sidecar's
/// address; 1 for a socket with no sidecar yet; `None` for no socket, or a
/// sidecar of another instance, port or address.
fn judge(run_dir: &Path, stem: &str, dest: SocketAddr) -> Option<u8> {
    if !is_socket(&scan::socket_path(run_dir, stem)) {
        return None;
    }
    match record::read::<Sidecar>(&scan::sidecar_path(run_dir, stem)) {
        Ok(sc) if sc.port != dest.port() => None,
        Ok(sc) => reach(sc.addr, dest),
        Err(_) => Some(1),
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
