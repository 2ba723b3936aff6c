//! The wrapper record while the command runs, rewritten atomically when it
//! learns something: how each descendant it reaped ended (see
//! `agentfs_registry::exit`; the router tells a crashed listener, answered at
//! once naming the exit, from one a watcher restarts, held), and which port
//! is the front end (`front`).

use std::path::PathBuf;
use std::sync::Mutex;

use rustix::process::WaitStatus;

use agentfs_registry::exit::{self, Exit};
use agentfs_registry::liveness::now_ms;
use agentfs_registry::record::{self, WrapperRecord};

/// The wrapper record, kept in memory to be rewritten.
pub struct LiveRecord {
    path: PathBuf,
    /// The record, and whether the wrapper has removed it for good.
    record: Mutex<(WrapperRecord, bool)>,
}

impl LiveRecord {
    /// Writes `record` (now with the command's process group) and keeps it.
    pub fn new(path: PathBuf, record: WrapperRecord) -> LiveRecord {
        if let Err(e) = record::write(&path, &record) {
            eprintln!("agentfs: cannot record the process group in {}: {e}", path.display());
        }
        LiveRecord { path, record: Mutex::new((record, false)) }
    }

    /// The primary port the user chose (`wrap --port`).
    pub fn port(&self) -> Option<u16> {
        self.record.lock().ok().and_then(|r| r.0.port)
    }

    /// Adds the exit of `pid` and rewrites the record.
    pub fn note(&self, pid: u32, status: WaitStatus) {
        let exit = Exit { pid, code: status.exit_status(), signal: status.terminating_signal(), at_ms: now_ms() };
        self.update(|rec| exit::push(&mut rec.exits, exit));
    }

    /// Changes the record and rewrites it, unless the wrapper has removed it.
    pub fn update(&self, change: impl FnOnce(&mut WrapperRecord)) {
        let Ok(mut state) = self.record.lock() else { return };
        change(&mut state.0);
        if !state.1 {
            let _ = record::write(&self.path, &state.0);
        }
    }

    /// Removes the record for good: a thread still noting an exit (SIGCHLD)
    /// must not write it again after the wrapper's clean-up.
    pub fn remove(&self) {
        let mut state = self.record.lock().unwrap_or_else(|p| p.into_inner());
        state.1 = true;
        let _ = std::fs::remove_file(&self.path);
    }
}
