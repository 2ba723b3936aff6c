//! Background instances (`agentfs up`): each has a supervisor process that
//! runs `agentfs wrap` for it, restarts it by its policy and writes its
//! output to `logs/<app>.<instance>.log`. The supervisor keeps one record,
//! `services/<pid>.json`, that `up`, `down`, `restart`, `ps` and the MCP
//! server read. A record whose supervisor is gone is a tombstone: it says
//! how the instance ended until `down` (or the next `up` of it) removes it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names::Label;
use crate::record::{self, RecordError, Versioned};
use crate::{Home, liveness};

/// When the supervisor starts the command again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never: the instance ends when its command does.
    #[default]
    No,
    /// When the command exits with a failure (non-zero, or killed by a
    /// signal it was not sent by agentfs), with backoff, at most
    /// [`RESTART_LIMIT`] times within [`RESTART_WINDOW_SECS`].
    OnFailure,
}

/// Restarts allowed within [`RESTART_WINDOW_SECS`] before the supervisor gives up.
pub const RESTART_LIMIT: usize = 5;
/// The window of [`RESTART_LIMIT`], in seconds.
pub const RESTART_WINDOW_SECS: u64 = 60;

/// What a background instance is doing, as its supervisor last wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Its command runs (whether it listens yet is `ps`'s to say).
    Running,
    /// Its command failed; it is started again after a delay.
    Backoff,
    /// Being stopped by `agentfs down`.
    Stopping,
    /// Its command ended and is not restarted (see `last_exit`).
    Exited,
    /// It could not be started, or failed too often (see `reason`).
    Failed,
}

/// `services/<pid>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub v: u32,
    /// The supervisor's pid.
    pub pid: u32,
    pub app: Label,
    /// The instance (the supervisor names it as `wrap` would, and follows
    /// its wrapper if that one took another id, `<id>-2`).
    pub instance: Label,
    pub cmd: Vec<String>,
    pub cwd: PathBuf,
    pub restart: Restart,
    pub phase: Phase,
    /// How many times the command was started again (by policy or `agentfs restart`).
    pub restarts: u32,
    /// How the command's last run ended: `exit status 1`, `killed by signal 9 (SIGKILL)`.
    pub last_exit: Option<String>,
    /// Why it failed, in one line (`failed` only).
    pub reason: Option<String>,
    /// The running `agentfs wrap`, if any.
    pub wrapper_pid: Option<u32>,
    pub started_at_ms: u64,
    /// When the current (or last) run of the command started.
    pub run_started_at_ms: u64,
    /// `--port` as given to `up`.
    pub port: Option<String>,
}

impl Versioned for ServiceRecord {
    fn version(&self) -> u32 {
        self.v
    }
}

impl ServiceRecord {
    /// Whether its supervisor still runs.
    pub fn alive(&self) -> bool {
        liveness::pid_alive(self.pid) && is_supervisor(self.pid)
    }

    /// `instance.app`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.instance, self.app)
    }

    pub fn path(&self, home: &Home) -> PathBuf {
        path(home, self.pid)
    }
}

/// The record of the supervisor `pid`.
pub fn path(home: &Home, pid: u32) -> PathBuf {
    home.services_dir().join(format!("{pid}.json"))
}

/// The `agentfs` argument that marks a supervisor's command line.
pub const SUPERVISOR_ARG: &str = "supervise";

/// Whether `pid` is an agentfs supervisor (Linux: by its command line, so
/// a reused pid is never signalled; elsewhere: assumed).
pub fn is_supervisor(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).nth(1) == Some(SUPERVISOR_ARG.as_bytes()))
        .unwrap_or(false)
}

pub fn read(path: &Path) -> Result<ServiceRecord, RecordError> {
    record::read(path)
}

pub fn write(home: &Home, rec: &ServiceRecord) -> io::Result<()> {
    record::write(&rec.path(home), rec)
}

/// Every readable record, oldest supervisor first; unreadable files are skipped.
pub fn list(home: &Home) -> Vec<ServiceRecord> {
    let Ok(dir) = std::fs::read_dir(home.services_dir()) else { return Vec::new() };
    let mut all: Vec<ServiceRecord> = dir
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json") && !n.starts_with('.')))
        .filter_map(|e| read(&e.path()).ok())
        .collect();
    all.sort_by_key(|r| (r.started_at_ms, r.pid));
    all
}

/// The records of `app` (and `instance`, when given).
pub fn of(home: &Home, app: &Label, instance: Option<&Label>) -> Vec<ServiceRecord> {
    list(home).into_iter().filter(|r| &r.app == app && instance.is_none_or(|i| &r.instance == i)).collect()
}

/// Asks an instance to stop, as `agentfs down` does: SIGTERM to its live
/// supervisors (each stops its wrapper and starts nothing again) and to its
/// live wrappers that no supervisor manages. Returns the pids signalled and
/// the records of supervisors that are gone (for the caller to remove).
pub fn signal_stop(home: &Home, app: &Label, instance: &Label) -> io::Result<(Vec<u32>, Vec<ServiceRecord>)> {
    let term = |pid: u32| {
        if let Some(p) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
    };
    let (live, dead): (Vec<ServiceRecord>, Vec<ServiceRecord>) =
        of(home, app, Some(instance)).into_iter().partition(ServiceRecord::alive);
    let mut signalled: Vec<u32> = live.iter().map(|s| s.pid).collect();
    signalled.iter().for_each(|p| term(*p));
    let managed: Vec<u32> = live.iter().chain(&dead).filter_map(|s| s.wrapper_pid).collect();
    let snap = crate::scan::scan_instance(&home.run_dir(), app, instance)?;
    for w in snap.wrappers.iter().filter(|w| !managed.contains(&w.wrapper_pid) && liveness::pid_alive(w.wrapper_pid)) {
        term(w.wrapper_pid);
        signalled.push(w.wrapper_pid);
    }
    Ok((signalled, dead))
}

pub fn remove(home: &Home, rec: &ServiceRecord) -> io::Result<()> {
    match std::fs::remove_file(rec.path(home)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::VERSION;
    use crate::testutil::TempDir;

    fn sample(pid: u32) -> ServiceRecord {
        ServiceRecord {
            v: VERSION,
            pid,
            app: Label::parse("shop").unwrap(),
            instance: Label::parse("main").unwrap(),
            cmd: vec!["python3".into()],
            cwd: "/tmp".into(),
            restart: Restart::OnFailure,
            phase: Phase::Running,
            restarts: 1,
            last_exit: Some("exit status 1".into()),
            reason: None,
            wrapper_pid: Some(7),
            started_at_ms: 1,
            run_started_at_ms: 2,
            port: None,
        }
    }

    #[test]
    fn records_round_trip_and_list_by_name() {
        let dir = TempDir::new("svc");
        let home = Home::at(dir.path().to_owned()).unwrap();
        std::fs::create_dir_all(home.services_dir()).unwrap();
        write(&home, &sample(1)).unwrap();
        let mut other = sample(2);
        other.app = Label::parse("blog").unwrap();
        write(&home, &other).unwrap();
        std::fs::write(home.services_dir().join("junk.json"), b"{").unwrap();
        assert_eq!(list(&home).len(), 2);
        let shop = of(&home, &Label::parse("shop").unwrap(), None);
        assert_eq!(shop, vec![sample(1)]);
        let json = std::fs::read_to_string(path(&home, 1)).unwrap();
        assert!(json.contains(r#""restart":"on-failure""#) && json.contains(r#""phase":"running""#), "{json}");
        remove(&home, &sample(1)).unwrap();
        remove(&home, &sample(1)).unwrap();
        assert_eq!(list(&home).len(), 1);
    }

    #[test]
    fn only_a_supervisor_is_one() {
        if cfg!(target_os = "linux") {
            assert!(!is_supervisor(std::process::id()));
            assert!(!sample(u32::MAX).alive());
        }
    }
}
