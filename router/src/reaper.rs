//! Stopping what a wrapper that died without stopping its command (SIGKILL)
//! left running. Discovery calls [`dead_wrapper`] where it removes such a
//! wrapper's record; the processes are found and stopped by
//! `agentfs_registry::reap` (which documents the rule that keeps it from
//! signalling anyone else's) on a thread of their own, so the grace period
//! never holds up discovery. Once they exit, their listeners' pids (watched)
//! trigger the rescan that removes their files and routes.

use agentfs_registry::reap;
use agentfs_registry::record::WrapperRecord;

/// Stops, in the background, what the dead wrapper `w` left running.
pub fn dead_wrapper(w: &WrapperRecord) {
    let w = w.clone();
    let spawned = std::thread::Builder::new().name("reaper".into()).spawn(move || {
        if reap::stop_leftovers(&w) {
            tracing::info!(app = %w.app, instance = %w.instance, wrapper_pid = w.wrapper_pid, pgid = ?w.pgid,
                "stopped what a dead wrapper left running");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to stop what a dead wrapper left running");
    }
}
