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
//!   path — killed by a signal or crashed — and counts as a crash, unless
//!   a watcher is restarting it: for [`RESTART_CHECK`] requests are held,
//!   then a live process of the wrapper's tree (its environment names the
//!   wrapper) running the same command line as the one that died means a
//!   restart (nodemon's SIGUSR2, `node --watch`'s SIGTERM to a plain
//!   `node`); one whose files were removed by the shim (a clean close or
//!   exit) is restarting.

use std::collections::BTreeMap;

use agentfs_registry::exit::Exit;
use agentfs_registry::record::WrapperRecord;
use http::{Response, StatusCode};

use crate::answers::{Answer, Format};
use crate::body::Body;

/// How long after a listener is found dead with its files left behind the
/// router looks for a watcher restarting it before it calls it a crash.
pub const RESTART_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// An instance that listened and whose listening processes are gone while
/// its wrapper runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    pub wrapper_pid: u32,
    /// The process that listened (the first, if several did).
    pub pid: u32,
    /// How it ended, when known to be a crash; `None` while it may be restarting.
    pub crash: Option<Crash>,
    /// Until when (ms since the epoch) the router waits to see whether a
    /// watcher restarts it, before it decides (see [`RESTART_CHECK`]).
    pub deciding_until_ms: Option<u64>,
}

/// A process that listened for an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub pid: u32,
    pub cmd: Vec<String>,
}

/// Why an instance counts as crashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Its wrapper reaped it and recorded this exit.
    Exit(Exit),
    /// It left its socket files behind: killed by a signal, or crashed.
    FilesLeft,
}

/// Per running wrapper: the processes that listened when its instance last did.
pub type Listened = BTreeMap<u32, Vec<Seen>>;

/// What `follow` learns from outside: the clock, and whether a process of
/// wrapper `w`'s tree other than `dead` runs `cmd` (a restart under way).
pub struct World<'a> {
    pub now_ms: u64,
    pub restarting: &'a dyn Fn(u32, &[String], u32) -> bool,
}

/// The instances that are down now, and what to remember for the next table.
///
/// `listening(w)` gives the processes now listening for `w`'s instance
/// (empty if none); `swept` holds the pids whose files this scan removed as
/// dead; `old_down` is the previous table's list (a crash stays a crash
/// until the instance listens again).
pub fn follow(
    wrappers: &[WrapperRecord],
    listening: impl Fn(&WrapperRecord) -> Vec<Seen>,
    (old, old_down): (&Listened, &[Down]),
    swept: &[u32],
    world: &World<'_>,
) -> (Listened, Vec<Down>) {
    let (mut listened, mut down) = (Listened::new(), Vec::new());
    for w in wrappers {
        let now = listening(w);
        if !now.is_empty() {
            listened.insert(w.wrapper_pid, now);
            continue;
        }
        let Some(seen) = old.get(&w.wrapper_pid) else { continue };
        listened.insert(w.wrapper_pid, seen.clone());
        let Some(first) = seen.first() else { continue };
        let before = old_down.iter().find(|d| d.wrapper_pid == w.wrapper_pid);
        let exit = w.exits.iter().rev().find(|e| seen.iter().any(|s| s.pid == e.pid));
        let mut d = Down { wrapper_pid: w.wrapper_pid, pid: first.pid, crash: None, deciding_until_ms: None };
        match (exit, before) {
            (Some(e), _) if e.looks_like_restart() => {}
            (Some(e), _) => d.crash = Some(Crash::Exit(e.clone())),
            (None, _) if seen.iter().any(|s| swept.contains(&s.pid)) => {
                d.deciding_until_ms = Some(world.now_ms + RESTART_CHECK.as_millis() as u64);
            }
            (None, Some(b)) if b.deciding_until_ms.is_some_and(|t| world.now_ms < t) => {
                d.deciding_until_ms = b.deciding_until_ms;
            }
            (None, Some(b)) if b.deciding_until_ms.is_some() => {
                let restarting = seen.iter().any(|s| (world.restarting)(w.wrapper_pid, &s.cmd, s.pid));
                d.crash = (!restarting).then_some(Crash::FilesLeft);
            }
            (None, Some(b)) => d.crash = b.crash.clone(),
            (None, None) => {}
        }
        down.push(d);
    }
    (listened, down)
}

/// Linux: whether a live process other than `dead`, started by wrapper
/// `wrapper` (its environment says so), runs exactly `cmd`.
pub fn tree_runs(wrapper: u32, cmd: &[String], dead: u32) -> bool {
    let Some(all) = agentfs_registry::proctree::list() else { return false };
    let wanted = [(agentfs_registry::env::WRAPPER_PID, wrapper.to_string())];
    let wanted: Vec<(&str, &str)> = wanted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.iter().filter(|p| !p.zombie && p.pid != dead).any(|p| {
        let Ok(line) = std::fs::read(format!("/proc/{}/cmdline", p.pid)) else { return false };
        let args: Vec<String> = line
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args == cmd && agentfs_registry::proctree::environ_has(p.pid, &wanted)
    })
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
pub fn answer(who: &str, down: &Down, crash: &Crash, fmt: Format, dash: &str) -> Response<Body> {
    let how = crash.describe();
    let message = format!(
        "{who}: the app exited (pid {}, {how}) — see its terminal; it is still wrapped by pid {}, \
         and is served again as soon as it listens",
        down.pid, down.wrapper_pid
    );
    let next = "Its terminal (or `agentfs logs`) shows why it exited; once it runs and listens again \
                (a restart, or a watcher's), this URL answers.";
    Answer::new(StatusCode::BAD_GATEWAY, "app exited", message, dash).next(next).render(fmt)
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

    fn seen(pid: u32) -> Vec<Seen> {
        vec![Seen { pid, cmd: vec!["app".into()] }]
    }

    fn at(now_ms: u64, restarting: &dyn Fn(u32, &[String], u32) -> bool) -> World<'_> {
        World { now_ms, restarting }
    }

    const NO: &dyn Fn(u32, &[String], u32) -> bool = &|_, _, _| false;
    const YES: &dyn Fn(u32, &[String], u32) -> bool = &|_, _, _| true;

    #[test]
    fn never_listened_is_starting_not_down() {
        let (listened, down) = follow(&[wrapper(1, vec![])], |_| vec![], (&Listened::new(), &[]), &[], &at(0, NO));
        assert!(listened.is_empty() && down.is_empty());
    }

    #[test]
    fn gone_listeners_are_crashes_or_restarts() {
        let (listened, down) = follow(&[wrapper(1, vec![])], |_| seen(40), (&Listened::new(), &[]), &[], &at(0, NO));
        assert!(down.is_empty());
        let gone =
            |exits, swept: &[u32]| follow(&[wrapper(1, exits)], |_| vec![], (&listened, &[]), swept, &at(0, NO)).1;
        assert_eq!(gone(vec![], &[])[0].crash, None, "files removed by the app: restarting");
        let killed = exit(40, None, Some(9));
        assert_eq!(gone(vec![killed.clone()], &[40])[0].crash, Some(Crash::Exit(killed)));
        assert_eq!(gone(vec![exit(40, None, Some(15))], &[40])[0].crash, None, "SIGTERM: a restart");
        assert_eq!(gone(vec![exit(41, Some(1), None)], &[])[0].crash, None, "another pid's exit");
    }

    #[test]
    fn files_left_behind_are_a_crash_unless_the_same_command_runs_again() {
        let listened = Listened::from([(1, seen(40))]);
        let w = [wrapper(1, vec![])];
        let (kept, first) = follow(&w, |_| vec![], (&listened, &[]), &[40], &at(1000, NO));
        assert_eq!((&first[0].crash, first[0].deciding_until_ms), (&None, Some(1250)), "held while deciding");
        let (_, still) = follow(&w, |_| vec![], (&kept, &first), &[], &at(1100, NO));
        assert_eq!(still[0].crash, None);
        let (kept, crashed) = follow(&w, |_| vec![], (&kept, &still), &[], &at(1300, NO));
        assert_eq!(crashed[0].crash, Some(Crash::FilesLeft));
        let (kept, later) = follow(&w, |_| vec![], (&kept, &crashed), &[], &at(9000, NO));
        assert_eq!(later[0].crash, Some(Crash::FilesLeft), "a crash lasts");
        let (_, again) = follow(&w, |_| seen(50), (&kept, &later), &[], &at(9000, NO));
        assert!(again.is_empty(), "until it listens again");
        let (_, restarted) = follow(&w, |_| vec![], (&listened, &still), &[], &at(1300, YES));
        assert_eq!(restarted[0].crash, None, "a watcher runs it again: restarting");
    }
}
