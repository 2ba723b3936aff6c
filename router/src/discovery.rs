//! Keeps the route table equal to what `run/` and `routes.json` say: a full
//! scan at start, then a rescan on every relevant change — a sidecar or
//! wrapper record written or removed, a socket removed (inotify / FSEvents
//! through `notify`; socket creation alone is never a signal, FSEvents does
//! not report it), a watched process exiting (pidfd), a request from the
//! management API or SIGHUP — plus a periodic rescan as a safety net.
//! Requests arriving during a scan coalesce into one more scan. Files of
//! processes that are gone are removed here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentfs_registry::liveness::pid_alive;
use agentfs_registry::record::WrapperRecord;
use agentfs_registry::routes::StaticRoutes;
use agentfs_registry::runfile::RunFile;
use agentfs_registry::scan::{self, Listener};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::pidwatch::PidWatch;
use crate::state::Shared;
use crate::table::Table;

/// What one scan found, live entries only.
struct Found {
    listeners: Vec<Listener>,
    wrappers: Vec<WrapperRecord>,
    statics: Option<StaticRoutes>,
}

/// Memory between scans: the last good static routes, problems already logged.
#[derive(Default)]
struct Memory {
    statics: StaticRoutes,
    logged: HashSet<(PathBuf, String)>,
}

/// The discovery task's handles; dropping it stops the watch.
pub struct Discovery {
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Scans once (so the first request sees every route), then starts the
/// watch. Without a watch (e.g. the inotify limits are reached) discovery
/// still works, through pid exits and the periodic rescan, and says so.
pub async fn start(shared: Arc<Shared>) -> Discovery {
    let mut memory = Memory::default();
    rescan(&shared, &mut memory).await;
    let watcher = match watch_dir(&shared) {
        Ok(w) => Some(w),
        Err(e) => {
            let every = shared.config.rescan_interval;
            tracing::warn!(error = %e, ?every, "cannot watch the run directory; new apps are found by the periodic rescan");
            None
        }
    };
    tokio::spawn(run(shared, memory));
    Discovery { _watcher: watcher }
}

async fn run(shared: Arc<Shared>, mut memory: Memory) {
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
        rescan(&shared, &mut memory).await;
        pids.update(&shared.table().watched_pids());
        shared.rescan_finished(ticket);
    }
}

/// One full scan: sweep the dead, build a table, swap it in if it differs.
async fn rescan(shared: &Arc<Shared>, memory: &mut Memory) {
    let home = shared.config.home.clone();
    let found = tokio::task::spawn_blocking(move || scan_and_sweep(&home.run_dir(), &home.routes_file())).await;
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
    let found = found.0;
    if let Some(s) = found.statics {
        memory.statics = s;
    }
    let old = shared.table();
    let table = Table::build(found.listeners, found.wrappers, &memory.statics, &old, shared.port);
    if !table.same_routes(&old) {
        drop(old);
        tracing::debug!("route table changed");
        shared.publish(table);
    }
}

type Problems = Vec<(PathBuf, String)>;

/// Blocking: reads `run/` and `routes.json`, removes files of dead processes.
fn scan_and_sweep(run_dir: &Path, routes_file: &Path) -> std::io::Result<(Found, Problems)> {
    let snap = scan::scan(run_dir)?;
    let mut problems: Problems = snap.problems.into_iter().map(|p| (p.path, p.why)).collect();
    let mut listeners = Vec::with_capacity(snap.listeners.len());
    for l in snap.listeners {
        if l.maybe_alive() {
            listeners.push(l);
        } else if let Err(e) = scan::remove_listener_files(run_dir, &l) {
            problems.push((scan::socket_path(run_dir, &l.stem), format!("cannot remove: {e}")));
        }
    }
    for (stem, sc) in &snap.orphans {
        if !pid_alive(sc.pid) {
            let _ = scan::remove_orphan_sidecar(run_dir, stem, sc);
        }
    }
    let mut wrappers = Vec::new();
    for w in snap.wrappers {
        if pid_alive(w.wrapper_pid) {
            wrappers.push(w);
        } else {
            crate::reaper::dead_wrapper(&w);
            let _ = scan::remove_wrapper_record(run_dir, &w);
        }
    }
    let statics = match StaticRoutes::load(routes_file) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push((routes_file.to_owned(), e.to_string()));
            None
        }
    };
    Ok((Found { listeners, wrappers, statics }, problems))
}

/// Removes the files of a listener that refused a connection, if that
/// cannot be an app between bind() and listen(): it has a sidecar (written
/// after listen) or its socket is older than two seconds.
pub fn sweep_refused(shared: &Arc<Shared>, listener: &Listener) {
    let settled = listener.sidecar.is_some()
        || agentfs_registry::liveness::now_ms().saturating_sub(listener.started_at_ms) > 2_000;
    if settled {
        let (run_dir, l) = (shared.config.home.run_dir(), listener.clone());
        let poke = shared.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = scan::remove_listener_files(&run_dir, &l) {
                tracing::warn!(stem = l.stem, error = %e, "cannot remove a dead listener's files");
            }
            poke.poke();
        });
    } else {
        shared.poke();
    }
}

fn watch_dir(shared: &Arc<Shared>) -> Result<notify::RecommendedWatcher, notify::Error> {
    let run_dir = shared.config.home.run_dir();
    let poke = shared.clone();
    let handler = move |ev: notify::Result<notify::Event>| match ev {
        Ok(ev) if relevant(&ev) => poke.poke(),
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(error = %e, "watch error; rescanning");
            poke.poke();
        }
    };
    let mut w = notify::recommended_watcher(handler)?;
    w.watch(&run_dir, RecursiveMode::NonRecursive)?;
    Ok(w)
}

/// Sidecars and wrapper records coming or going, sockets going.
fn relevant(ev: &notify::Event) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    if ev.need_rescan() {
        return true;
    }
    let removed = matches!(ev.kind, EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_)));
    ev.paths.iter().filter_map(|p| p.file_name()?.to_str()).any(|name| match RunFile::classify(name) {
        RunFile::Sidecar(_) | RunFile::Wrapper { .. } => true,
        RunFile::Socket(_) | RunFile::HashedSocket(_) => removed,
        RunFile::Other => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};

    fn ev(kind: EventKind, names: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for n in names {
            e = e.add_path(PathBuf::from("/run").join(n));
        }
        e
    }

    #[test]
    fn sidecars_count_and_socket_creation_does_not() {
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(relevant(&ev(rename, &[".shop.main.3000.json.1-0.tmp", "shop.main.3000.json"])));
        assert!(relevant(&ev(EventKind::Remove(RemoveKind::File), &["shop.main.3000.sock"])));
        assert!(relevant(&ev(EventKind::Create(CreateKind::File), &["shop.main.wrapper-7.json"])));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["shop.main.3000.sock"])));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &[".shop.main.3000.json.1-0.tmp"])));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["notes.txt"])));
    }
}
