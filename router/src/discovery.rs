//! Keeps the route table equal to what `run/` and `routes.json` say: a full
//! scan at start, then a rescan on every relevant change (the file-system
//! watch of `dirwatch`), a watched process exiting (pidfd), a request from
//! the management API or SIGHUP — plus a periodic rescan as a safety net.
//! Requests arriving during a scan coalesce into one more scan. Files of
//! processes that are gone are removed here.
//!
//! Every scan first checks the home directory and `run/` (ours, not
//! group/world-writable): while they are not, nothing new is trusted — the
//! table keeps only what an earlier scan verified and that is still there —
//! and nothing is removed; one line says why and how to fix it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use agentfs_registry::liveness::pid_alive;
use agentfs_registry::record::WrapperRecord;
use agentfs_registry::routes::StaticRoutes;
use agentfs_registry::scan::{self, Listener};
use agentfs_registry::{Home, Target, procnet, static_target};

use crate::dirwatch::DirWatch;
use crate::pidwatch::PidWatch;
use crate::state::Shared;
use crate::table::Table;

/// What one scan found, live entries only.
struct Found {
    listeners: Vec<Listener>,
    wrappers: Vec<WrapperRecord>,
    /// Pids whose listener files were removed because the pid is dead.
    swept: Vec<u32>,
    statics: Option<StaticRoutes>,
    /// Why the home directory cannot be trusted now, if it cannot.
    unsafe_home: Option<String>,
    /// When the youngest socket without a sidecar is old enough to be
    /// judged (see `bare_and_gone`): scanned again then, not at the next
    /// periodic rescan, so a killed app's file goes within that time.
    settle_due_ms: Option<u64>,
}

/// Memory between scans: the last good static routes, problems already logged.
#[derive(Default)]
struct Memory {
    statics: StaticRoutes,
    logged: HashSet<(PathBuf, String)>,
    unsafe_home: Option<String>,
}

/// The discovery task; it ends (and its watch with it) when the router stops.
pub struct Discovery {
    _task: tokio::task::JoinHandle<()>,
}

/// Scans once (so the first request sees every route), then starts the
/// watch and the task that keeps the table up to date.
pub async fn start(shared: Arc<Shared>) -> Discovery {
    let mut memory = Memory::default();
    let watch = DirWatch::start(shared.clone());
    rescan(&shared, &mut memory).await;
    crate::hostsync::start(&shared);
    Discovery { _task: tokio::spawn(run(shared, memory, watch)) }
}

async fn run(shared: Arc<Shared>, mut memory: Memory, mut watch: DirWatch) {
    let poke = shared.clone();
    let mut pids = PidWatch::new(Arc::new(move || poke.poke()));
    pids.update(&shared.table().watched_pids());
    let mut tick = tokio::time::interval(shared.config.rescan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let ticket = tokio::select! {
            t = shared.rescan_requested() => t,
            _ = tick.tick() => shared.rescan_ticket(),
            _ = shared.stopped() => return,
        };
        watch.refresh();
        rescan(&shared, &mut memory).await;
        pids.update(&shared.table().watched_pids());
        shared.rescan_finished(ticket);
    }
}

/// One full scan: sweep the dead, build a table, swap it in if it differs.
async fn rescan(shared: &Arc<Shared>, memory: &mut Memory) {
    let home = shared.config.home.clone();
    let found = tokio::task::spawn_blocking(move || scan_and_sweep(&home)).await;
    let found = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return tracing::warn!(error = %e, "cannot scan the run directory; keeping the routes"),
        Err(e) => return tracing::error!(error = %e, "scan failed"),
    };
    if memory.logged.len() > 10_000 {
        memory.logged.clear();
    }
    for (path, why) in &found.1 {
        if memory.logged.insert((path.clone(), why.clone())) {
            tracing::info!(path = %path.display(), why, "skipped");
        }
    }
    let mut found = found.0;
    let old = shared.table();
    let settle_due = found.settle_due_ms;
    note_home_safety(memory, found.unsafe_home.take());
    if memory.unsafe_home.is_some() {
        keep_only_verified(&mut found, &old);
    } else if let Some(s) = found.statics {
        memory.statics = s;
    }
    let mut table = Table::build(found.listeners, found.wrappers, &memory.statics, &old, shared.port);
    // Files a request swept (a refused connect) count as this scan's: the scan no longer sees them.
    let mut swept = found.swept;
    swept.extend(shared.take_swept());
    table.follow_exits(&old, &swept);
    let due = [table.decision_due_ms(), settle_due].into_iter().flatten().min();
    if !table.same_routes(&old) {
        drop(old);
        tracing::debug!("route table changed");
        shared.publish(table);
    }
    if let Some(due) = due {
        recheck_at(shared, due);
    }
}

/// Rescans at `due_ms` (a crash-or-restart decision, see `crashes`).
fn recheck_at(shared: &Arc<Shared>, due_ms: u64) {
    let wait = due_ms.saturating_sub(agentfs_registry::liveness::now_ms());
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(wait + 1)).await;
        shared.poke();
    });
}

/// Logs once when the home directory becomes unsafe, and once when it is
/// safe again.
fn note_home_safety(memory: &mut Memory, now: Option<String>) {
    match (&memory.unsafe_home, &now) {
        (None, Some(why)) => tracing::error!(why, "refusing new routes until the home directory is private again"),
        (Some(_), None) => tracing::info!("the home directory is private again; routes are read as usual"),
        _ => {}
    }
    memory.unsafe_home = now;
}

/// While the home directory is unsafe: only listeners and wrappers that the
/// current table already has (verified when it was safe) stay.
fn keep_only_verified(found: &mut Found, old: &Table) {
    let known: Vec<&Listener> = old.listeners().collect();
    found.listeners.retain(|l| known.iter().any(|k| same_listener(k, l)));
    found.wrappers.retain(|w| old.starting().contains(w));
}

fn same_listener(a: &Listener, b: &Listener) -> bool {
    (&a.stem, &a.target, a.ino, a.pid, a.started_at_ms) == (&b.stem, &b.target, b.ino, b.pid, b.started_at_ms)
}

type Problems = Vec<(PathBuf, String)>;

/// Blocking: checks the home directory, reads `run/` and `routes.json`,
/// removes files of dead processes (only while the home is safe).
fn scan_and_sweep(home: &Home) -> std::io::Result<(Found, Problems)> {
    let (run_dir, routes_file) = (home.run_dir(), home.routes_file());
    let unsafe_home = home.ensure().err().map(|e| e.to_string());
    let sweep = unsafe_home.is_none();
    let snap = scan::scan(&run_dir)?;
    let mut problems: Problems = snap.problems.into_iter().map(|p| (p.path, p.why)).collect();
    let mut listeners = Vec::with_capacity(snap.listeners.len());
    let bare = snap.listeners.iter().any(|l| l.sidecar.is_none());
    let sockets = if bare { procnet::UnixTable::read() } else { None };
    let mut swept = Vec::new();
    let mut settle_due_ms: Option<u64> = None;
    for l in snap.listeners {
        if let Some(why) = foreign_tcp_listener(&l) {
            problems.push((scan::sidecar_path(&run_dir, &l.stem), why));
        } else if l.maybe_alive() && !bare_and_gone(&l, sockets.as_ref()) {
            if l.sidecar.is_none() && !settled(&l) {
                let due = l.started_at_ms + SETTLE_MS + 1;
                settle_due_ms = Some(settle_due_ms.map_or(due, |d| d.min(due)));
            }
            listeners.push(l);
        } else if sweep {
            match scan::remove_listener_files(&run_dir, &l) {
                Ok(()) => swept.extend(l.pid),
                Err(e) => problems.push((scan::socket_path(&run_dir, &l.stem), format!("cannot remove: {e}"))),
            }
        }
    }
    for (stem, sc) in &snap.orphans {
        if sweep && !pid_alive(sc.pid) {
            let _ = scan::remove_orphan_sidecar(&run_dir, stem, sc);
        }
    }
    let mut wrappers = Vec::new();
    for w in snap.wrappers {
        if pid_alive(w.wrapper_pid) {
            wrappers.push(w);
        } else if sweep {
            crate::reaper::dead_wrapper(&w);
            let _ = scan::remove_wrapper_record(&run_dir, &w);
        }
    }
    let statics = match StaticRoutes::load(&routes_file) {
        Ok(mut s) => {
            s.routes.retain(|host, target| match static_target::check_saved(home, target) {
                Ok(()) => true,
                Err(e) => {
                    problems.push((routes_file.clone(), format!("the route for {host} is not used: {e}")));
                    false
                }
            });
            Some(s)
        }
        Err(e) => {
            problems.push((routes_file.to_owned(), e.to_string()));
            None
        }
    };
    Ok((Found { listeners, wrappers, swept, statics, unsafe_home, settle_due_ms }, problems))
}

/// A socket without a sidecar (an app that bound `$AGENTFS_SOCKET` itself)
/// whose listener is known to be gone: the file outlives a killed process,
/// and no pid tells. Linux's socket table tells, without touching a live
/// app, for a socket still bound under its name; one the table does not
/// list under that name was either closed or renamed after its bind, and a
/// non-blocking connect tells those apart (refused: gone). A socket younger
/// than two seconds may be between bind and listen. (macOS: a request that
/// finds it refusing sweeps it.)
fn bare_and_gone(l: &Listener, sockets: Option<&procnet::UnixTable>) -> bool {
    let (Target::Unix(path), Some(sockets)) = (&l.target, sockets) else { return false };
    if l.sidecar.is_some() || !settled(l) {
        return false;
    }
    match sockets.state(path) {
        procnet::UnixState::Listening => false,
        procnet::UnixState::Bound => true,
        procnet::UnixState::Absent => refuses(path),
    }
}

/// How old a socket without a sidecar must be before it is judged: an app
/// may be between its bind() and its listen() until then.
const SETTLE_MS: u64 = 2_000;

fn settled(l: &Listener) -> bool {
    agentfs_registry::liveness::now_ms().saturating_sub(l.started_at_ms) > SETTLE_MS
}

/// Whether a connect to the socket at `path` is refused (nothing listens),
/// asked without blocking: a full queue is busy, not gone.
#[cfg(not(target_os = "linux"))]
fn refuses(_: &std::path::Path) -> bool {
    false // no socket table there either: never asked
}

#[cfg(target_os = "linux")]
fn refuses(path: &std::path::Path) -> bool {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let Ok(addr) = SocketAddrUnix::new(path) else { return false };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let Ok(fd) = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None) else { return false };
    matches!(rustix::net::connect(&fd, &addr), Err(rustix::io::Errno::CONNREFUSED | rustix::io::Errno::NOENT))
}

/// Why a TCP route (the PORT fallback) must not be taken: the process that
/// listens on its address belongs to another user. (Linux; elsewhere the
/// sidecar's own ownership is the check.)
fn foreign_tcp_listener(l: &Listener) -> Option<String> {
    let Target::Tcp { host, port } = &l.target else { return None };
    let addr = std::net::SocketAddr::new(host.parse().ok()?, *port);
    let me = rustix::process::geteuid().as_raw();
    let owner = procnet::tcp_listener_uid(addr).filter(|uid| *uid != me)?;
    Some(format!("TCP route to {addr}: the process listening there belongs to uid {owner}, not to uid {me}"))
}

/// Removes the files of a listener that refused a connection, if that
/// cannot be an app between bind() and listen(): it has a sidecar (written
/// after listen) or its socket is older than two seconds.
pub fn sweep_refused(shared: &Arc<Shared>, listener: &Listener) {
    if listener.sidecar.is_some() || settled(listener) {
        let (run_dir, l) = (shared.config.home.run_dir(), listener.clone());
        let poke = shared.clone();
        tokio::task::spawn_blocking(move || {
            match scan::remove_listener_files(&run_dir, &l) {
                Ok(()) => poke.note_swept(l.pid),
                Err(e) => tracing::warn!(stem = l.stem, error = %e, "cannot remove a dead listener's files"),
            }
            poke.poke();
        });
    } else {
        shared.poke();
    }
}
