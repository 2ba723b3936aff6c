//! The wrapper's record of how the processes it reaped ended (see
//! `agentfs_registry::exit`): each reaped descendant is added to the wrapper
//! record, rewritten atomically, so the router can tell a crashed listener
//! (answered at once, naming the exit) from one a watcher restarts (held).

use std::path::PathBuf;
use std::sync::Mutex;

use rustix::process::WaitStatus;

use agentfs_registry::exit::{self, Exit};
use agentfs_registry::liveness::now_ms;
use agentfs_registry::record::{self, WrapperRecord};

/// The wrapper record, kept in memory to be rewritten.
pub struct ExitLog {
    path: PathBuf,
    record: Mutex<WrapperRecord>,
}

impl ExitLog {
    /// Writes `record` (now with the command's process group) and keeps it.
    pub fn new(path: PathBuf, record: WrapperRecord) -> ExitLog {
        if let Err(e) = record::write(&path, &record) {
            eprintln!("agentfs: cannot record the process group in {}: {e}", path.display());
        }
        ExitLog { path, record: Mutex::new(record) }
    }

    /// Adds the exit of `pid` and rewrites the record (if it is still there:
    /// a wrapper that is ending has removed it).
    pub fn note(&self, pid: u32, status: WaitStatus) {
        let exit = Exit { pid, code: status.exit_status(), signal: status.terminating_signal(), at_ms: now_ms() };
        let Ok(mut rec) = self.record.lock() else { return };
        exit::push(&mut rec.exits, exit);
        if self.path.exists() {
            let _ = record::write(&self.path, &*rec);
        }
    }
}
