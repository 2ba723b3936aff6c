//! While a background instance is between two runs of its command (waiting
//! out a restart's backoff, or being restarted by `agentfs restart`), its
//! supervisor keeps a wrapper record of its own in `run/`
//! (`<app>.<instance>.wrapper-<supervisor pid>.json`, no process group). To
//! the router that is an instance whose wrapper runs and which has not
//! listened yet, so requests wait for it (and get the 503 page after the
//! start wait) instead of a 404 as if it had never existed; `wrap` does not
//! take its name meanwhile. The next run's wrapper record replaces it; a
//! killed supervisor's is swept like any dead wrapper's.
//!
//! For `agentfs restart` the old run's listeners are also taken out of
//! `run/` before it is stopped ([`unlist`]): a request that came just then
//! would otherwise reach a socket whose app is going away and get a 502.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentfs_registry::record::{self, VERSION, WrapperRecord};
use agentfs_registry::runfile::wrapper_stem;
use agentfs_registry::service::ServiceRecord;
use agentfs_registry::{Home, liveness, scan};

/// Writes the record that holds `rec`'s instance; its path, if written.
pub fn hold(home: &Home, rec: &ServiceRecord) -> Option<PathBuf> {
    let instance = rec.instance.clone();
    let held = WrapperRecord {
        v: VERSION,
        app: rec.app.clone(),
        instance: instance.clone(),
        wrapper_pid: rec.pid,
        cmd: rec.cmd.clone(),
        cwd: rec.cwd.clone(),
        started_at_ms: liveness::now_ms(),
        pgid: None,
        stop_timeout_secs: None,
        exits: Vec::new(),
        port: None,
        front_port: None,
    };
    let path = home.run_dir().join(format!("{}.json", wrapper_stem(&rec.app, &instance, rec.pid)));
    record::write(&path, &held).ok()?;
    Some(path)
}

/// Removes the record `hold` wrote, if any.
pub fn release(held: &mut Option<PathBuf>) {
    if let Some(path) = held.take() {
        let _ = std::fs::remove_file(path);
    }
}

/// How long requests already sent to the old run have to be answered once
/// the router sends it no new ones.
const IN_FLIGHT: Duration = Duration::from_millis(250);

/// Removes the files of the listeners of `wrapper_pid`'s run (their sockets
/// go on serving the connections already made), then waits, up to a second,
/// until the router holds new requests for the instance (it lists it as
/// starting, with no listener), and [`IN_FLIGHT`] more for the requests
/// the old run is answering.
pub fn unlist(home: &Home, rec: &ServiceRecord, wrapper_pid: u32) {
    let instance = &rec.instance;
    let Ok(snap) = scan::scan_instance(&home.run_dir(), &rec.app, instance) else { return };
    for l in snap.listeners.iter().filter(|l| l.sidecar.as_ref().is_some_and(|s| s.wrapper_pid == Some(wrapper_pid))) {
        let _ = scan::remove_listener_files(&home.run_dir(), l);
    }
    let (app, instance) = (rec.app.as_str(), instance.as_str());
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(view) = agentfs_router::client::routes(home) else { return };
        let listed = view.apps.iter().any(|a| a.app == app && a.instances.iter().any(|i| i.instance == instance));
        let held = view.starting.iter().any(|s| s.app == app && s.instance == instance);
        if held && !listed {
            std::thread::sleep(IN_FLIGHT);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
