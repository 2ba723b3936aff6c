//! The file-system watch behind discovery (inotify / kqueue through
//! `notify`; kqueue, not FSEvents, on macOS: it links no framework, so the
//! binary can be linked without Apple's SDK, and it reports at once):
//! `run/` for sidecars and wrapper records coming or going and sockets going
//! (socket creation alone is never a signal: a socket exists before its app
//! listens), and the home directory for `run/` itself being replaced and
//! `routes.json` edited by hand. A watch follows an inode, so when `run/` is
//! deleted and made again the watch is made again on the new directory
//! before the next scan (see [`DirWatch::refresh`]).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentfs_registry::runfile::RunFile;
use notify::{EventKind, RecursiveMode, Watcher};

use crate::state::Shared;

/// The watch, and which `run/` it follows.
pub struct DirWatch {
    shared: Arc<Shared>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Device and inode of the `run/` being watched; `None`: not watched.
    run_id: Option<(u64, u64)>,
    /// Set by the watch when `run/` itself goes or comes: a new directory
    /// may get the old one's inode number at once.
    replaced: Arc<AtomicBool>,
    warned: bool,
}

impl DirWatch {
    /// Starts watching. Without a watch (e.g. the inotify limits are
    /// reached) discovery still works, through pid exits and the periodic
    /// rescan, and says so once.
    pub fn start(shared: Arc<Shared>) -> DirWatch {
        let replaced = Arc::new(AtomicBool::new(false));
        let mut w = DirWatch { shared, watcher: None, run_id: None, replaced, warned: false };
        w.refresh();
        w
    }

    /// Makes sure the watch follows the `run/` that is there now: call
    /// before each scan, so nothing written after the scan goes unseen.
    pub fn refresh(&mut self) {
        let run_dir = self.shared.config.home.run_dir();
        let now = std::fs::symlink_metadata(&run_dir).ok().map(|m| (m.dev(), m.ino()));
        let replaced = self.replaced.swap(false, Ordering::Relaxed);
        if now.is_some() && now == self.run_id && !replaced {
            return;
        }
        // A new watcher, not a new watch on the old one: the backend keys its
        // watches by path and may still hold the deleted directory's.
        self.watcher = None;
        self.run_id = None;
        match self.watch(&run_dir) {
            Ok(()) => {
                if self.warned {
                    tracing::info!(dir = %run_dir.display(), "watching the run directory again");
                }
                self.run_id = now;
                self.warned = false;
            }
            Err(e) if !self.warned => {
                let every = self.shared.config.rescan_interval;
                tracing::warn!(error = %e, ?every, "cannot watch the run directory; new apps are found by the periodic rescan");
                self.warned = true;
            }
            Err(_) => {}
        }
    }

    fn watch(&mut self, run_dir: &std::path::Path) -> Result<(), notify::Error> {
        if self.watcher.is_none() {
            let mut w = notify::recommended_watcher(handler(self.shared.clone(), self.replaced.clone()))?;
            w.watch(self.shared.config.home.root(), RecursiveMode::NonRecursive)?;
            self.watcher = Some(w);
        }
        let w = self.watcher.as_mut().expect("made above");
        w.watch(run_dir, RecursiveMode::NonRecursive)
    }
}

fn handler(shared: Arc<Shared>, replaced: Arc<AtomicBool>) -> impl notify::EventHandler {
    let run_dir: PathBuf = shared.config.home.run_dir();
    move |ev: notify::Result<notify::Event>| match ev {
        Ok(ev) if relevant(&ev, &run_dir) => {
            if ev.paths.contains(&run_dir) {
                replaced.store(true, Ordering::Relaxed);
            }
            shared.poke();
        }
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(error = %e, "watch error; rescanning");
            shared.poke();
        }
    }
}

/// Sidecars and wrapper records coming or going, sockets going; in the
/// home directory, `run/` or `routes.json` changing.
fn relevant(ev: &notify::Event, run_dir: &std::path::Path) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    if ev.need_rescan() {
        return true;
    }
    let removed = matches!(ev.kind, EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_)));
    ev.paths.iter().any(|p| {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else { return false };
        if p.parent() != Some(run_dir) {
            return p == run_dir || name == "routes.json";
        }
        match RunFile::classify(name) {
            RunFile::Sidecar(_) | RunFile::Wrapper { .. } => true,
            RunFile::Socket(_) | RunFile::HashedSocket(_) => removed,
            RunFile::Other => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
    use std::path::Path;

    fn ev(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn sidecars_count_and_socket_creation_does_not() {
        let run = Path::new("/h/run");
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(relevant(&ev(rename, &["/h/run/.shop.main.3000.json.1-0.tmp", "/h/run/shop.main.3000.json"]), run));
        assert!(relevant(&ev(EventKind::Remove(RemoveKind::File), &["/h/run/shop.main.3000.sock"]), run));
        assert!(relevant(&ev(EventKind::Create(CreateKind::File), &["/h/run/shop.main.wrapper-7.json"]), run));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["/h/run/shop.main.3000.sock"]), run));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["/h/run/.shop.main.3000.json.1-0.tmp"]), run));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["/h/run/notes.txt"]), run));
    }

    #[test]
    fn the_home_directory_counts_for_run_and_routes_only() {
        let run = Path::new("/h/run");
        assert!(relevant(&ev(EventKind::Create(CreateKind::Folder), &["/h/run"]), run));
        assert!(relevant(&ev(EventKind::Remove(RemoveKind::Folder), &["/h/run"]), run));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(relevant(&ev(rename, &["/h/.routes.json.1-0.tmp", "/h/routes.json"]), run));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["/h/router.pid"]), run));
        assert!(!relevant(&ev(EventKind::Create(CreateKind::File), &["/h/shop.main.3000.json"]), run));
    }
}
