//! Another instance's port, seen from inside an instance. Outside the
//! instances the router answers `localhost:P` for the first instance that
//! took P (its `original` ports); inside one, loopback stays the instance's
//! own: a connect to a port this instance does not listen on but another
//! instance does is refused (`ECONNREFUSED`), exactly as if the instance ran
//! alone — so port probes and `wait-on tcp:3001` keep their meaning and two
//! forks never reach each other. Ports no instance holds (a database run
//! natively or in Docker) are left alone.

use std::path::Path;

use agentfs_registry::liveness;
use agentfs_registry::record::{self, Sidecar};
use agentfs_registry::runfile::RunFile;
use agentfs_registry::scan;

use crate::config::Identity;

/// Whether a live listener of another instance holds `port` (so the router
/// answers it on loopback), while this instance has none there.
pub fn held_by_another_instance(id: &Identity, port: u16) -> bool {
    if !id.original_ports {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(&id.run_dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(name) = name.to_str() else { return false };
        match RunFile::classify(name) {
            RunFile::Socket(n) if n.port == port && (n.app != id.app || n.instance != id.instance) => {
                live(&id.run_dir, &n.stem(), None)
            }
            RunFile::HashedSocket(stem) => live(&id.run_dir, &stem, Some((id, port))),
            _ => false,
        }
    })
}

/// A socket whose sidecar names a live process (of another instance, on
/// `port`, when the name does not tell); a bare socket with no sidecar
/// counts, as the router routes it.
fn live(run_dir: &Path, stem: &str, check: Option<(&Identity, u16)>) -> bool {
    match record::read::<Sidecar>(&scan::sidecar_path(run_dir, stem)) {
        Ok(sc) => {
            let other =
                check.is_none_or(|(id, port)| sc.port == port && (sc.app != id.app || sc.instance != id.instance));
            other && sc.socket.is_some() && liveness::pid_alive(sc.pid)
        }
        Err(e) => e.is_not_found() && check.is_none(),
    }
}
