//! The sidecar of a converted listener, written (atomically) once listen()
//! has succeeded: its appearance is what tells the router the app is ready.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use agentfs_registry::record::{self, Family, Sidecar, VERSION};

use crate::config;
use crate::listeners;
use crate::log::decision;

/// Writes the sidecar of listener `slot` (bound to `fd`) unless done already.
pub fn announce(fd: libc::c_int, slot: u16) {
    let (Some(id), Some(l)) = (config::identity(), listeners::get(slot)) else { return };
    if l.announced {
        return;
    }
    let socket = Path::new(OsStr::from_bytes(l.path())).to_owned();
    let sidecar_path = socket.with_extension("json");
    let addr = l.local.to_std();
    let sidecar = Sidecar {
        v: VERSION,
        app: id.app.clone(),
        instance: id.instance.clone(),
        port: addr.port(),
        socket: Some(socket),
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
            listeners::set_announced(slot);
            decision!(fd, "listen: announced {}", sidecar_path.display());
        }
        Err(e) => decision!(fd, "listen: cannot write {}: {e}", sidecar_path.display()),
    }
}
