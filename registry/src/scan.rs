//! Reads `run/` into listeners and wrapper records. The sidecar is the source
//! of truth; a bare `<app>.<instance>.<port>.sock` (an app that bound
//! `$AGENTFS_SOCKET` itself) is a listener too, named by its file. Only socket
//! files that are really sockets owned by us count: no symlinks, no one else's.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::names::Label;
use crate::record::{self, Sidecar, Target, WrapperRecord};
use crate::runfile::{JSON_EXT, RunFile, SOCK_EXT, SocketName, is_hashed_stem};

/// One listening socket (or TCP fallback route) of a wrapped app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// File stem in `run/` (full or hashed).
    pub stem: String,
    pub name: SocketName,
    pub target: Target,
    pub sidecar: Option<Sidecar>,
    /// From the sidecar, else the socket file's modification time.
    pub started_at_ms: u64,
    /// The listening process, when known.
    pub pid: Option<u32>,
    /// Inode of the socket file, to remove exactly the file that was found.
    pub ino: Option<u64>,
}

impl Listener {
    pub fn app(&self) -> &Label {
        &self.name.app
    }
    pub fn instance(&self) -> &Label {
        &self.name.instance
    }
    pub fn port(&self) -> u16 {
        self.name.port
    }
    /// False only when the listening process is known and gone.
    pub fn maybe_alive(&self) -> bool {
        self.pid.is_none_or(crate::liveness::pid_alive)
    }
}

/// A file in `run/` that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub why: String,
}

/// What `run/` holds.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub listeners: Vec<Listener>,
    pub wrappers: Vec<WrapperRecord>,
    /// Sidecars whose socket is gone: leftovers, unless their process is
    /// still between `bind` and `rename`.
    pub orphans: Vec<(String, Sidecar)>,
    pub problems: Vec<Problem>,
}

/// Scans `run_dir`. A missing directory is an empty snapshot.
pub fn scan(run_dir: &Path) -> io::Result<Snapshot> {
    scan_filtered(run_dir, |_| true)
}

/// Scans only the files of one app instance (and hashed names, whose
/// identity only their sidecar tells): cheap enough to poll.
pub fn scan_instance(run_dir: &Path, app: &Label, instance: &Label) -> io::Result<Snapshot> {
    let prefix = format!("{app}.{instance}.");
    let snap = scan_filtered(run_dir, |name| {
        name.starts_with(&prefix)
            || name.strip_suffix(".json").or(name.strip_suffix(".sock")).is_some_and(is_hashed_stem)
    })?;
    let mine = |a: &Label, i: &Label| a == app && i == instance;
    Ok(Snapshot {
        listeners: snap.listeners.into_iter().filter(|l| mine(l.app(), l.instance())).collect(),
        wrappers: snap.wrappers.into_iter().filter(|w| mine(&w.app, &w.instance)).collect(),
        orphans: snap.orphans.into_iter().filter(|(_, s)| mine(&s.app, &s.instance)).collect(),
        problems: snap.problems,
    })
}

fn scan_filtered(run_dir: &Path, keep: impl Fn(&str) -> bool) -> io::Result<Snapshot> {
    let entries = match fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::default()),
        Err(e) => return Err(e),
    };
    let mut sockets: BTreeMap<String, Option<SocketName>> = BTreeMap::new();
    let mut sidecars: Vec<String> = Vec::new();
    let mut snap = Snapshot::default();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !keep(&name) {
            continue;
        }
        match RunFile::classify(&name) {
            RunFile::Socket(n) => {
                sockets.insert(n.stem(), Some(n));
            }
            RunFile::HashedSocket(stem) => {
                sockets.insert(stem, None);
            }
            RunFile::Sidecar(stem) => sidecars.push(stem),
            RunFile::Wrapper { .. } => match record::read::<WrapperRecord>(&entry.path()) {
                Ok(w) => snap.wrappers.push(w),
                Err(e) => snap.problems.push(Problem { path: entry.path(), why: e.to_string() }),
            },
            RunFile::Other => {}
        }
    }
    for stem in sidecars {
        let has_socket = sockets.contains_key(&stem);
        let socket_name = sockets.remove(&stem).flatten();
        read_sidecar(run_dir, &stem, has_socket, socket_name, &mut snap);
    }
    for (stem, name) in sockets {
        let path = socket_path(run_dir, &stem);
        let Some(name) = name else {
            let why = "hashed socket name without a sidecar: identity unknown".to_owned();
            snap.problems.push(Problem { path, why });
            continue;
        };
        match check_socket(&path) {
            Ok(meta) => snap.listeners.push(Listener {
                pid: name.replica.map(|r| r.pid),
                name,
                target: Target::Unix(path),
                sidecar: None,
                started_at_ms: mtime_ms(&meta),
                ino: Some(meta.ino()),
                stem,
            }),
            Err(why) => snap.problems.push(Problem { path, why }),
        }
    }
    snap.listeners.sort_by(|a, b| (a.started_at_ms, &a.stem).cmp(&(b.started_at_ms, &b.stem)));
    Ok(snap)
}

fn read_sidecar(run_dir: &Path, stem: &str, has_socket: bool, from_name: Option<SocketName>, snap: &mut Snapshot) {
    let path = run_dir.join(format!("{stem}.{JSON_EXT}"));
    let sc: Sidecar = match record::read(&path) {
        Ok(sc) => sc,
        Err(e) if e.is_not_found() => return,
        Err(e) => return snap.problems.push(Problem { path, why: e.to_string() }),
    };
    if let Some(n) = &from_name {
        if (&n.app, &n.instance, n.port) != (&sc.app, &sc.instance, sc.port) {
            let why = "sidecar identity differs from its file name".to_owned();
            return snap.problems.push(Problem { path, why });
        }
    }
    let name = from_name.unwrap_or_else(|| SocketName::new(sc.app.clone(), sc.instance.clone(), sc.port));
    let (target, ino) = match (&sc.socket, sc.tcp) {
        (_, Some(tcp)) if !tcp.ip().is_loopback() => {
            let why = format!("TCP route to {tcp} is not a loopback address");
            return snap.problems.push(Problem { path, why });
        }
        (_, Some(tcp)) => (Target::Tcp { host: tcp.ip().to_string(), port: tcp.port() }, None),
        (Some(sock), None) => {
            let expected = socket_path(run_dir, stem);
            if *sock != expected {
                let why = format!("sidecar points at {}, expected {}", sock.display(), expected.display());
                return snap.problems.push(Problem { path, why });
            }
            if !has_socket {
                return snap.orphans.push((stem.to_owned(), sc));
            }
            match check_socket(sock) {
                Ok(meta) => (Target::Unix(expected), Some(meta.ino())),
                Err(why) => return snap.problems.push(Problem { path: expected, why }),
            }
        }
        (None, None) => {
            let why = "sidecar names neither a socket nor a TCP address".to_owned();
            return snap.problems.push(Problem { path, why });
        }
    };
    snap.listeners.push(Listener {
        stem: stem.to_owned(),
        name,
        target,
        pid: Some(sc.pid),
        started_at_ms: sc.started_at_ms,
        sidecar: Some(sc),
        ino,
    });
}

/// `<run_dir>/<stem>.sock`.
pub fn socket_path(run_dir: &Path, stem: &str) -> PathBuf {
    run_dir.join(format!("{stem}.{SOCK_EXT}"))
}

/// `<run_dir>/<stem>.json`.
pub fn sidecar_path(run_dir: &Path, stem: &str) -> PathBuf {
    run_dir.join(format!("{stem}.{JSON_EXT}"))
}

/// A socket file we may connect to: a socket (not a symlink to one) owned by
/// our effective uid. The error says why not.
pub fn check_socket(path: &Path) -> Result<fs::Metadata, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("is a symlink; only sockets created in run/ are routed".into());
    }
    if !meta.file_type().is_socket() {
        return Err("is not a socket".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!("belongs to uid {}, not to uid {me}", meta.uid()));
    }
    Ok(meta)
}

fn mtime_ms(meta: &fs::Metadata) -> u64 {
    let secs = u64::try_from(meta.mtime()).unwrap_or(0);
    let nanos = u64::try_from(meta.mtime_nsec()).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

/// Removes the files of a listener found by [`scan`], unless they changed
/// since: a sidecar that now names another process, or a socket file that is
/// now another inode, belongs to a newer listener and is left alone.
pub fn remove_listener_files(run_dir: &Path, listener: &Listener) -> io::Result<()> {
    let (sock, json) = (socket_path(run_dir, &listener.stem), sidecar_path(run_dir, &listener.stem));
    if let Some(old) = &listener.sidecar {
        match record::read::<Sidecar>(&json) {
            Ok(now) if (now.pid, now.started_at_ms) == (old.pid, old.started_at_ms) => {}
            Err(e) if e.is_not_found() => {}
            _ => return Ok(()),
        }
    }
    let socket_replaced = match (listener.ino, fs::symlink_metadata(&sock)) {
        (Some(ino), Ok(meta)) => meta.ino() != ino,
        _ => false,
    };
    // A live binder's claim: the socket outlives the process that listened
    // (uvicorn's parent holds it across its workers' restarts).
    let held = claim_holder(run_dir, &listener.stem).is_some_and(crate::liveness::pid_alive);
    let doomed: &[&PathBuf] = if socket_replaced || held { &[&json] } else { &[&sock, &json] };
    for path in doomed {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if !socket_replaced && !held {
        remove_if_present(&claim_path(run_dir, &listener.stem))?;
    }
    Ok(())
}

/// `.<stem>.claim`: the shim's mark on a socket bound and not yet announced
/// by its binder (pid on the first line).
pub fn claim_path(run_dir: &Path, stem: &str) -> PathBuf {
    run_dir.join(format!(".{stem}.claim"))
}

/// The pid on a claim's first line.
fn claim_holder(run_dir: &Path, stem: &str) -> Option<u32> {
    read_claim(&claim_path(run_dir, stem)).map(|(pid, _)| pid)
}

/// A claim's pid and the address the app bound (`<pid>\n<addr>`; older
/// claims hold the pid only). Never blocks or follows a link.
pub fn read_claim(claim: &Path) -> Option<(u32, Option<std::net::SocketAddr>)> {
    let text = crate::safefile::read_small(claim, 128).ok().and_then(|b| String::from_utf8(b).ok())?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse::<u32>().ok()?;
    Some((pid, lines.next().and_then(|a| a.trim().parse().ok())))
}

/// Removes the sidecar of an orphan found by [`scan`] (its socket was
/// already gone), unless it changed since: a sidecar that now names another
/// process belongs to a newer listener and is left alone. The socket path is
/// not touched: a socket there now is a newer listener's.
pub fn remove_orphan_sidecar(run_dir: &Path, stem: &str, sidecar: &Sidecar) -> io::Result<()> {
    let json = sidecar_path(run_dir, stem);
    match record::read::<Sidecar>(&json) {
        Ok(now) if (now.pid, now.started_at_ms) == (sidecar.pid, sidecar.started_at_ms) => {}
        _ => return Ok(()),
    }
    remove_if_present(&json)
}

/// Removes the record of a wrapper found by [`scan`] (e.g. once its process is gone).
pub fn remove_wrapper_record(run_dir: &Path, wrapper: &WrapperRecord) -> io::Result<()> {
    let stem = crate::runfile::wrapper_stem(&wrapper.app, &wrapper.instance, wrapper.wrapper_pid);
    remove_if_present(&run_dir.join(format!("{stem}.{JSON_EXT}")))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
