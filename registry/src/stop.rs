//! Stopping a process tree: SIGTERM (with SIGCONT, so a stopped process
//! receives it) to everything found, then SIGKILL for what is left after the
//! grace period (`AGENTFS_STOP_TIMEOUT_SECS`, default 5). Used by the wrapper
//! for its own command and, through [`crate::reap`], for what a killed
//! wrapper left.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// The grace period when `AGENTFS_STOP_TIMEOUT_SECS` is not set.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
const MAX_GRACE_SECS: u64 = 3600;
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for SIGKILLed processes to be gone.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// A grace period that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {var} {value:?}: expected whole seconds from 0 to {MAX_GRACE_SECS}, e.g. {var}=5", var = crate::env::STOP_TIMEOUT_SECS)]
pub struct GraceError {
    pub value: String,
}

/// The grace period given by `value` (the variable's value, if set).
pub fn grace_from(value: Option<&str>) -> Result<Duration, GraceError> {
    let Some(value) = value else { return Ok(DEFAULT_GRACE) };
    match value.trim().parse::<u64>() {
        Ok(s) if s <= MAX_GRACE_SECS => Ok(Duration::from_secs(s)),
        _ => Err(GraceError { value: value.to_owned() }),
    }
}

/// What still runs of a tree, as found at one moment: a process group that
/// has a live member, and single processes (outside it, or all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub group: Option<u32>,
    pub pids: BTreeSet<u32>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.group.is_none() && self.pids.is_empty()
    }
}

/// Stops what `find` reports until it reports nothing: SIGTERM + SIGCONT to
/// each target once, SIGKILL to what remains at `deadline`; returns whether
/// SIGKILL was needed. `find` is called at every poll (every 50 ms) and must
/// report only what lives now. A group reported gone once is never signalled
/// again (its id is free for reuse from then on).
pub fn stop(mut find: impl FnMut() -> Targets, deadline: Instant) -> bool {
    let mut group_gone = false;
    let mut termed: BTreeSet<Option<u32>> = BTreeSet::new();
    let mut now = |group_gone: &mut bool| {
        let mut t = find();
        if *group_gone || t.group.is_none() {
            *group_gone = true;
            t.group = None;
        }
        t
    };
    loop {
        let t = now(&mut group_gone);
        if t.is_empty() {
            return false;
        }
        if Instant::now() >= deadline {
            signal_all(&t, Signal::KILL);
            break;
        }
        if let Some(g) = t.group.filter(|_| termed.insert(None)) {
            signal(g, true, Signal::TERM);
            signal(g, true, Signal::CONT);
        }
        for &pid in t.pids.iter().filter(|p| termed.insert(Some(**p))) {
            signal(pid, false, Signal::TERM);
            signal(pid, false, Signal::CONT);
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    let until = Instant::now() + AFTER_KILL;
    while Instant::now() < until {
        let t = now(&mut group_gone);
        if t.is_empty() {
            break;
        }
        signal_all(&t, Signal::KILL);
        std::thread::sleep(POLL);
    }
    true
}

fn signal_all(t: &Targets, sig: Signal) {
    if let Some(g) = t.group {
        signal(g, true, sig);
    }
    for &pid in &t.pids {
        signal(pid, false, sig);
    }
}

/// Signals a process or a process group; never pid 0 or 1 (a process group
/// of our own or init), whatever the caller found.
fn signal(id: u32, group: bool, sig: Signal) {
    let Some(pid) = i32::try_from(id).ok().filter(|&p| p > 1).and_then(Pid::from_raw) else { return };
    let _ = if group { kill_process_group(pid, sig) } else { kill_process(pid, sig) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_values() {
        assert_eq!(grace_from(None), Ok(DEFAULT_GRACE));
        assert_eq!(grace_from(Some("2")), Ok(Duration::from_secs(2)));
        assert_eq!(grace_from(Some("0")), Ok(Duration::ZERO));
        for bad in ["", "x", "-1", "1.5", "99999"] {
            let e = grace_from(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("AGENTFS_STOP_TIMEOUT_SECS"), "{e}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn term_then_kill_after_the_grace() {
        use std::os::unix::process::CommandExt;
        let alive = |c: &mut std::process::Child| c.try_wait().unwrap().is_none();
        let mut polite = std::process::Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let mut stubborn = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = [0u8; 6];
        std::io::Read::read_exact(stubborn.stdout.as_mut().unwrap(), &mut line).unwrap();
        let (g, s) = (polite.id(), stubborn.id());
        let started = Instant::now();
        let killed = stop(
            || {
                let mut t = Targets { group: alive(&mut polite).then_some(g), ..Targets::default() };
                if alive(&mut stubborn) {
                    t.pids.insert(s);
                }
                t
            },
            Instant::now() + Duration::from_millis(300),
        );
        assert!(killed, "the shell ignores SIGTERM");
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
        assert!(polite.try_wait().unwrap().is_some() && stubborn.try_wait().unwrap().is_some());
    }
}
