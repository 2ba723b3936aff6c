//! Crash ≠ start. An instance whose wrapper runs but that has no listener is
//! either starting (it never listened: hold requests, as `proxy` does), or it
//! listened and its listening process is gone. Then it is either restarting
//! (a watcher such as nodemon stopped it to start it again: hold requests
//! like a start) or it crashed (answer at once with a 502 naming the exit).
//!
//! The table remembers, per wrapper, the pids that listened in the last
//! table where its instance listened. When they are gone, the exit decides:
//! - the wrapper reaped the process (it is a child subreaper) and recorded
//!   its exit (`WrapperRecord::exits`): exit status 0 or SIGTERM, SIGINT,
//!   SIGHUP, SIGUSR1, SIGUSR2 is a restart, anything else a crash;
//! - otherwise (its parent reaped it): a process that left its socket files
//!   behind (the router swept them, the pid being dead) did not run its exit
//!   path — killed by a signal or crashed — and counts as a crash; one whose
//!   files were removed by the shim (a clean close or exit) is restarting.

use std::collections::BTreeMap;

use agentfs_registry::exit::Exit;
use agentfs_registry::record::WrapperRecord;
use http::{Response, StatusCode};

use crate::answers::{Answer, Format};
use crate::body::Body;

/// An instance that listened and whose listening processes are gone while
/// its wrapper runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    pub wrapper_pid: u32,
    /// The process that listened (the first, if several did).
    pub pid: u32,
    /// How it ended, when known to be a crash; `None` while it may be restarting.
    pub crash: Option<Crash>,
}

/// Why an instance counts as crashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Its wrapper reaped it and recorded this exit.
    Exit(Exit),
    /// It left its socket files behind: killed by a signal, or crashed.
    FilesLeft,
}

/// Per running wrapper: the pids that listened when its instance last did.
pub type Listened = BTreeMap<u32, Vec<u32>>;

/// The instances that are down now, and what to remember for the next table.
///
/// `listening(w)` gives the pids now listening for `w`'s instance (empty if
/// none); `swept` holds the pids whose files this scan removed as dead;
/// `old_down` is the previous table's list (a crash stays a crash until the
/// instance listens again).
pub fn follow(
    wrappers: &[WrapperRecord],
    listening: impl Fn(&WrapperRecord) -> Vec<u32>,
    old: &Listened,
    old_down: &[Down],
    swept: &[u32],
) -> (Listened, Vec<Down>) {
    let (mut listened, mut down) = (Listened::new(), Vec::new());
    for w in wrappers {
        let now = listening(w);
        if !now.is_empty() {
            listened.insert(w.wrapper_pid, now);
            continue;
        }
        let Some(pids) = old.get(&w.wrapper_pid) else { continue };
        listened.insert(w.wrapper_pid, pids.clone());
        let Some(&pid) = pids.first() else { continue };
        let before = old_down.iter().find(|d| d.wrapper_pid == w.wrapper_pid).and_then(|d| d.crash.clone());
        let exit = w.exits.iter().rev().find(|e| pids.contains(&e.pid));
        let crash = match exit {
            Some(e) if e.looks_like_restart() => None,
            Some(e) => Some(Crash::Exit(e.clone())),
            None if pids.iter().any(|p| swept.contains(p)) => Some(Crash::FilesLeft),
            None => before,
        };
        down.push(Down { wrapper_pid: w.wrapper_pid, pid, crash });
    }
    (listened, down)
}

impl Crash {
    /// `killed by signal 9 (SIGKILL)`, `exit status 1`.
    pub fn describe(&self) -> String {
        match self {
            Crash::Exit(e) => e.describe(),
            Crash::FilesLeft => "without closing its socket: killed by a signal, or crashed".to_owned(),
        }
    }
}

/// The 502 for a crashed instance: what exited, how, and who still wraps it.
pub fn answer(who: &str, down: &Down, crash: &Crash, fmt: Format) -> Response<Body> {
    let how = crash.describe();
    let message = format!(
        "{who}: the app exited (pid {}, {how}) — see its terminal; it is still wrapped by pid {}, \
         and is served again as soon as it listens",
        down.pid, down.wrapper_pid
    );
    Answer { status: StatusCode::BAD_GATEWAY, title: "app exited", message, routes: None }.render(fmt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentfs_registry::Label;

    fn wrapper(pid: u32, exits: Vec<Exit>) -> WrapperRecord {
        WrapperRecord {
            v: 1,
            app: Label::parse("shop").unwrap(),
            instance: Label::parse("main").unwrap(),
            wrapper_pid: pid,
            cmd: vec![],
            cwd: "/".into(),
            started_at_ms: 0,
            pgid: None,
            stop_timeout_secs: None,
            exits,
            port: None,
            front_port: None,
        }
    }

    fn exit(pid: u32, code: Option<i32>, signal: Option<i32>) -> Exit {
        Exit { pid, code, signal, at_ms: 0 }
    }

    #[test]
    fn never_listened_is_starting_not_down() {
        let (listened, down) = follow(&[wrapper(1, vec![])], |_| vec![], &Listened::new(), &[], &[]);
        assert!(listened.is_empty() && down.is_empty());
    }

    #[test]
    fn gone_listeners_are_crashes_or_restarts() {
        let (listened, down) = follow(&[wrapper(1, vec![])], |_| vec![40], &Listened::new(), &[], &[]);
        assert!(down.is_empty());
        let gone = |exits, swept: &[u32]| follow(&[wrapper(1, exits)], |_| vec![], &listened, &[], swept).1;
        assert_eq!(gone(vec![], &[40])[0].crash, Some(Crash::FilesLeft));
        assert_eq!(gone(vec![], &[])[0].crash, None, "files removed by the app: restarting");
        let killed = exit(40, None, Some(9));
        assert_eq!(gone(vec![killed.clone()], &[40])[0].crash, Some(Crash::Exit(killed)));
        assert_eq!(gone(vec![exit(40, None, Some(15))], &[40])[0].crash, None, "SIGTERM: a restart");
        assert_eq!(gone(vec![exit(41, Some(1), None)], &[])[0].crash, None, "another pid's exit");
    }

    #[test]
    fn a_crash_lasts_until_the_instance_listens_again() {
        let listened = Listened::from([(1, vec![40])]);
        let (kept, down) = follow(&[wrapper(1, vec![])], |_| vec![], &listened, &[], &[40]);
        let (kept, later) = follow(&[wrapper(1, vec![])], |_| vec![], &kept, &down, &[]);
        assert_eq!(later[0].crash, Some(Crash::FilesLeft));
        let (_, again) = follow(&[wrapper(1, vec![])], |_| vec![50], &kept, &later, &[]);
        assert!(again.is_empty());
    }
}
