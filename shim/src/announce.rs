//! The sidecar of a converted listener, written (atomically) once listen()
//! has succeeded: its appearance is what tells the router the app is ready.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use agentfs_registry::record::{self, Family, Sidecar, VERSION};

use crate::config;
use crate::listeners;
use crate::log::decision;
use crate::sockaddr::Addr;

/// Writes the sidecar of listener `slot` (bound to `fd`) unless done already.
pub fn announce(fd: libc::c_int, slot: u16) {
    let Some(l) = listeners::get(slot) else { return };
    if l.announced {
        return;
    }
    let socket = Path::new(OsStr::from_bytes(l.path())).to_owned();
    if write_sidecar(fd, &socket, l.local.to_std()) {
        listeners::set_announced(slot);
    }
}

/// Writes the sidecar of a socket another process bound (`local` from its
/// claim), which this process listened on: unless a live process announced
/// it already (the other workers of a pool listen on the same socket). The
/// binder keeps the cleanup: it holds the socket for as long as it lives.
pub fn announce_inherited(fd: libc::c_int, local: Addr) {
    let Some(name) = crate::sys::sock_name(fd) else { return };
    let Some(path) = name.unix_path() else { return };
    let socket = Path::new(OsStr::from_bytes(path)).to_owned();
    let sidecar_path = socket.with_extension("json");
    if record::read::<Sidecar>(&sidecar_path).is_ok_and(|sc| agentfs_registry::liveness::pid_alive(sc.pid)) {
        return;
    }
    write_sidecar(fd, &socket, local.to_std());
}

fn write_sidecar(fd: libc::c_int, socket: &Path, addr: std::net::SocketAddr) -> bool {
    let Some(id) = config::identity() else { return false };
    let sidecar_path = socket.with_extension("json");
    let sidecar = Sidecar {
        v: VERSION,
        app: id.app.clone(),
        instance: id.instance.clone(),
        port: addr.port(),
        socket: Some(socket.to_owned()),
        tcp: None,
        pid: std::process::id(),
        wrapper_pid: id.wrapper_pid,
        family: if addr.is_ipv6() { Family::Ipv6 } else { Family::Ipv4 },
        addr: addr.ip(),
        cmd: std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd: std::env::current_dir().unwrap_or_default(),
        started_at_ms: crate::sys::now_ms(),
    };
    match record::write(&sidecar_path, &sidecar) {
        Ok(()) => {
            decision!(fd, "listen: announced {}", sidecar_path.display());
            true
        }
        Err(e) => {
            decision!(fd, "listen: cannot write {}: {e}", sidecar_path.display());
            false
        }
    }
}
