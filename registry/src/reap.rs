//! What a wrapper that died without stopping its command (SIGKILL, a crash)
//! left running, and stopping it: the router does it as soon as it sees the
//! wrapper's pid exit; `agentfs wrap` and `agentfs ps` do it when no router
//! runs.
//!
//! The rule that keeps this from signalling someone else's processes (a pid
//! or a process group id may have been reused since the record was written):
//! - on Linux, a process is stopped only if its environment (as it started)
//!   holds this wrapper's `AGENTFS_WRAPPER_PID`, `AGENTFS_APP` and
//!   `AGENTFS_INSTANCE`; the recorded process group is stopped only if one of
//!   its live members is such a process and none of them is pid 1 or the
//!   caller. From then on the group counts as the same while it has members
//!   (the kernel does not reuse the id of a group that has members).
//! - elsewhere (no `/proc`), only the recorded group is stopped, and only if
//!   its leader is still alive and still leads it, and it is not pid 1 or the
//!   caller's own group.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, getpgid, getpgrp, test_kill_process_group};

use crate::liveness::pid_alive;
use crate::proctree::{self, ProcInfo};
use crate::record::WrapperRecord;
use crate::stop::{self, DEFAULT_GRACE, Targets};
use crate::{env, scan};

/// The variables that tie a process to `rec`'s wrapper.
fn ties(rec: &WrapperRecord) -> [(&'static str, String); 3] {
    [
        (env::WRAPPER_PID, rec.wrapper_pid.to_string()),
        (env::APP, rec.app.to_string()),
        (env::INSTANCE, rec.instance.to_string()),
    ]
}

fn forbidden(pid: u32) -> bool {
    pid <= 1 || pid == std::process::id()
}

/// What of `rec`'s command runs now, by the rule above.
pub fn leftovers(rec: &WrapperRecord, all: Option<&[ProcInfo]>) -> Targets {
    let own_group = u32::try_from(getpgrp().as_raw_pid()).unwrap_or(0);
    let group = rec.pgid.filter(|&g| !forbidden(g) && g != own_group);
    let Some(all) = all else {
        let leads = |g: u32| {
            let pid = i32::try_from(g).ok().and_then(Pid::from_raw);
            pid.is_some_and(|p| getpgid(Some(p)).is_ok_and(|l| l == p) && test_kill_process_group(p).is_ok())
        };
        return Targets { group: group.filter(|&g| leads(g)), pids: BTreeSet::new() };
    };
    let ties = ties(rec);
    let wanted: Vec<(&str, &str)> = ties.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pids: BTreeSet<u32> = all
        .iter()
        .filter(|p| !p.zombie && !forbidden(p.pid) && proctree::environ_has(p.pid, &wanted))
        .map(|p| p.pid)
        .collect();
    let group = group.filter(|&g| {
        let members: Vec<&ProcInfo> = all.iter().filter(|p| p.pgid == g && !p.zombie).collect();
        !members.is_empty()
            && !members.iter().any(|p| forbidden(p.pid))
            && members.iter().any(|p| pids.contains(&p.pid))
    });
    Targets { group, pids }
}

/// Stops what `rec`'s dead wrapper left (SIGTERM, SIGKILL after the
/// wrapper's grace period), blocking until it is gone; false if nothing ran.
/// Environments are read once: afterwards a process stays a target while it
/// lives (and its new children join it), the group while it has members.
pub fn stop_leftovers(rec: &WrapperRecord) -> bool {
    let first = leftovers(rec, proctree::list().as_deref());
    if first.is_empty() {
        return false;
    }
    let grace = rec.stop_timeout_secs.map_or(DEFAULT_GRACE, Duration::from_secs);
    let (mut group, mut tied) = (first.group, first.pids);
    stop::stop(
        || {
            let Some(all) = proctree::list() else {
                let has_members = |g: u32| {
                    i32::try_from(g).ok().and_then(Pid::from_raw).is_some_and(|p| test_kill_process_group(p).is_ok())
                };
                group = group.filter(|&g| has_members(g));
                return Targets { group, pids: BTreeSet::new() };
            };
            let live: BTreeSet<u32> = all.iter().filter(|p| !p.zombie && !forbidden(p.pid)).map(|p| p.pid).collect();
            let mut now: BTreeSet<u32> = tied.intersection(&live).copied().collect();
            for &p in &now.clone() {
                now.extend(proctree::descendants(&all, p, &[]).intersection(&live));
            }
            tied = now;
            group = group.filter(|&g| all.iter().any(|p| p.pgid == g && !p.zombie));
            Targets { group, pids: tied.clone() }
        },
        Instant::now() + grace,
    );
    true
}

/// For every wrapper record whose process is gone: stops what it left,
/// removes the record and the files of its listeners that are gone. Returns
/// a line for each wrapper that had left something running.
pub fn sweep(run_dir: &Path) -> io::Result<Vec<String>> {
    let snap = scan::scan(run_dir)?;
    let dead: Vec<&WrapperRecord> = snap.wrappers.iter().filter(|w| !pid_alive(w.wrapper_pid)).collect();
    if dead.is_empty() {
        return Ok(Vec::new());
    }
    let mut notes = Vec::new();
    for w in &dead {
        if stop_leftovers(w) {
            notes.push(format!(
                "stopped what {} ({}) left running when its wrapper (pid {}) died",
                w.app, w.instance, w.wrapper_pid
            ));
        }
        scan::remove_wrapper_record(run_dir, w)?;
    }
    let of_dead = |wp: Option<u32>| dead.iter().any(|w| Some(w.wrapper_pid) == wp);
    let snap = scan::scan(run_dir)?;
    for l in &snap.listeners {
        if l.sidecar.as_ref().is_some_and(|s| of_dead(s.wrapper_pid)) && !l.maybe_alive() {
            scan::remove_listener_files(run_dir, l)?;
        }
    }
    for (stem, sc) in &snap.orphans {
        if of_dead(sc.wrapper_pid) && !pid_alive(sc.pid) {
            scan::remove_orphan_sidecar(run_dir, stem, sc)?;
        }
    }
    Ok(notes)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::names::Label;
    use crate::record::VERSION;
    use std::os::unix::process::CommandExt;

    fn record(wrapper_pid: u32, pgid: Option<u32>) -> WrapperRecord {
        WrapperRecord {
            v: VERSION,
            app: Label::parse("reap").unwrap(),
            instance: Label::parse("main").unwrap(),
            wrapper_pid,
            cmd: vec![],
            cwd: "/".into(),
            started_at_ms: 0,
            pgid,
            stop_timeout_secs: Some(1),
            exits: Vec::new(),
            port: None,
            front_port: None,
        }
    }

    #[test]
    fn only_processes_tied_to_the_wrapper_are_stopped() {
        let fake_wrapper = 999_999_999;
        let mut tied = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .env(env::WRAPPER_PID, fake_wrapper.to_string())
            .env(env::APP, "reap")
            .env(env::INSTANCE, "main")
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        // Until it has exec'ed, the child's environment is still this test's.
        let deadline = Instant::now() + Duration::from_secs(10);
        let ours = [(env::WRAPPER_PID, fake_wrapper.to_string())];
        let ours: Vec<(&str, &str)> = ours.iter().map(|(k, v)| (*k, v.as_str())).collect();
        while !proctree::environ_has(tied.id(), &ours) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let all = proctree::list().unwrap();
        let t = leftovers(&record(fake_wrapper, Some(tied.id())), Some(&all));
        assert_eq!(t.group, Some(tied.id()));
        assert_eq!(t.pids, [tied.id()].into());
        let t = leftovers(&record(fake_wrapper, Some(other.id())), Some(&all));
        assert_eq!(t.group, None, "a group with no tied member is not ours (a reused id)");
        assert_eq!(leftovers(&record(fake_wrapper, Some(1)), Some(&all)).group, None);
        let me = std::process::id();
        assert_eq!(leftovers(&record(fake_wrapper, Some(me)), Some(&all)).group, None);
        assert!(stop_leftovers(&record(fake_wrapper, Some(tied.id()))));
        assert!(tied.try_wait().unwrap().is_some(), "stopped and reaped");
        assert!(other.try_wait().unwrap().is_none(), "left alone");
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
