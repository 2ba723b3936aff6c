//! `router.pid`: who the running router is, written so that a stale or
//! foreign pid is never signalled. The file carries a marker line, the pid
//! and (Linux) the process's start time; the running router holds an
//! exclusive `flock` on it for its whole life. A pid is trusted only if the
//! marker matches, the file is locked, the process is alive, and its start
//! time is the recorded one (so a reused pid is not mistaken for the router).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use agentfs_registry::Home;
use agentfs_registry::liveness::pid_alive;
use agentfs_registry::safefile;
use rustix::fs::{FlockOperation, flock};

use crate::error::RouterError;

/// Largest pidfile read.
const MAX_PIDFILE: u64 = 4096;

/// First line of every router pidfile.
pub const MARKER: &str = "agentfs-router v1";

/// What a pidfile says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (Linux).
    pub start: Option<u64>,
}

impl PidRecord {
    fn render(&self) -> String {
        let start = self.start.map(|s| format!("start {s}\n")).unwrap_or_default();
        format!("{MARKER}\npid {}\n{start}", self.pid)
    }

    fn parse(text: &str) -> Option<PidRecord> {
        let mut lines = text.lines();
        if lines.next()? != MARKER {
            return None;
        }
        let pid = lines.next()?.strip_prefix("pid ")?.parse().ok().filter(|p| *p > 0)?;
        let start = lines.next().and_then(|l| l.strip_prefix("start ")).and_then(|s| s.parse().ok());
        Some(PidRecord { pid, start })
    }
}

/// The running router's hold on its pidfile; removes the file when dropped.
pub(crate) struct PidLock {
    file: File,
    path: PathBuf,
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let ours = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Takes the pidfile for this process, or says which router holds it.
pub(crate) fn acquire(home: &Home) -> Result<PidLock, RouterError> {
    let path = home.router_pid();
    let err = |source| RouterError::Pidfile { path: path.clone(), source };
    let nofollow = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(&path)
        .map_err(err)?;
    if !file.metadata().map_err(err)?.file_type().is_file() {
        return Err(err(io::Error::other("is not a regular file; remove it")));
    }
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        let pid = read(home).ok().flatten().map_or(0, |r| r.pid);
        return Err(RouterError::AlreadyRunning { pid });
    }
    let me = PidRecord { pid: std::process::id(), start: start_time(std::process::id()) };
    file.set_len(0).map_err(err)?;
    file.write_all(me.render().as_bytes()).map_err(err)?;
    Ok(PidLock { file, path })
}

/// Reads the pidfile; `None` if it is missing or not a router's.
pub fn read(home: &Home) -> io::Result<Option<PidRecord>> {
    match safefile::read_small(&home.router_pid(), MAX_PIDFILE) {
        Ok(bytes) => Ok(std::str::from_utf8(&bytes).ok().and_then(PidRecord::parse)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(safefile::SafeReadError::Io(e)) => Err(e),
        Err(_) => Ok(None), // a FIFO, a symlink, another user's file: not a router's
    }
}

/// The pid of the router running for `home`, verified; `None` when the
/// pidfile is missing, stale, foreign or unlocked.
pub fn running(home: &Home) -> Option<u32> {
    let rec = read(home).ok().flatten()?;
    if !is_locked(&home.router_pid()) || !pid_alive(rec.pid) {
        return None;
    }
    match (rec.start, start_time(rec.pid)) {
        (Some(recorded), Some(now)) if recorded != now => None,
        _ => Some(rec.pid),
    }
}

/// Sends SIGTERM (graceful stop) to the verified running router; returns
/// its pid, or `None` when no router runs (nothing is signalled).
pub fn terminate(home: &Home) -> io::Result<Option<u32>> {
    let Some(pid) = running(home) else { return Ok(None) };
    let raw = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    let Some(raw) = raw else { return Ok(None) };
    rustix::process::kill_process(raw, rustix::process::Signal::TERM)?;
    Ok(Some(pid))
}

fn is_locked(path: &Path) -> bool {
    let Ok(f) = safefile::open_checked(path, MAX_PIDFILE) else { return false };
    match flock(&f, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&f, FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// Field 22 of `/proc/<pid>/stat` (Linux); `None` elsewhere.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_home(tag: &str) -> Home {
        let p = std::env::temp_dir().join(format!("agentfs-pidfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let h = Home::at(p).unwrap();
        h.ensure().unwrap();
        h
    }

    #[test]
    fn lock_verifies_and_refuses_a_second_router() {
        let home = temp_home("lock");
        assert_eq!(running(&home), None);
        let lock = acquire(&home).unwrap();
        assert_eq!(running(&home), Some(std::process::id()));
        assert!(matches!(acquire(&home), Err(RouterError::AlreadyRunning { pid }) if pid == std::process::id()));
        drop(lock);
        assert!(!home.router_pid().exists());
        assert_eq!(running(&home), None);
        std::fs::remove_dir_all(home.root()).unwrap();
    }

    #[test]
    fn stale_and_foreign_pidfiles_are_never_trusted() {
        let home = temp_home("stale");
        let me = PidRecord { pid: std::process::id(), start: start_time(std::process::id()) };
        std::fs::write(home.router_pid(), me.render()).unwrap();
        assert_eq!(running(&home), None, "alive and ours, but unlocked: not a router");
        std::fs::write(home.router_pid(), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(read(&home).unwrap(), None, "no marker");
        assert_eq!(terminate(&home).unwrap(), None);
        let wrong_start = PidRecord { pid: std::process::id(), start: Some(1) };
        let f = File::open(home.router_pid()).unwrap();
        std::fs::write(home.router_pid(), wrong_start.render()).unwrap();
        flock(&f, FlockOperation::NonBlockingLockExclusive).unwrap();
        assert_eq!(running(&home), None, "a reused pid has another start time");
        drop(f);
        assert_eq!(PidRecord::parse(&me.render()), Some(me));
        std::fs::remove_dir_all(home.root()).unwrap();
    }
}
