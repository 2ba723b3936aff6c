//! The wrapped command's process tree, owned by the wrapper. The command runs
//! in a process group of its own (with the terminal, see `terminal`); a
//! signal sent to the wrapper goes to that whole group (`signals`). On Linux
//! the wrapper is a child subreaper, so descendants that leave the group
//! (`setsid`, daemonising tools) stay its descendants, found by parentage in
//! `/proc`; on macOS the tree is read with `proc_listchildpids` at stop time.
//! When the command's first process (the leader) exits, the rest of the tree
//! gets SIGTERM, then SIGKILL after `AGENTFS_STOP_TIMEOUT_SECS`; after a stop
//! signal, whatever still runs when that grace period is over is killed.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rustix::process::{Pid, WaitOptions, WaitStatus, waitpid};

use agentfs_registry::stop::{self, Targets};
use agentfs_registry::{Home, env};
use agentfs_router::pidfile;

use crate::live_record::LiveRecord;
use crate::sys;
use crate::terminal::Terminal;

/// The grace period between SIGTERM and SIGKILL, from the environment.
pub fn grace() -> Result<Duration> {
    let value = std::env::var_os(env::STOP_TIMEOUT_SECS).map(|v| v.to_string_lossy().into_owned());
    Ok(stop::grace_from(value.as_deref())?)
}

/// Sets up `cmd` to start a process group of its own, in front of the
/// terminal if the wrapper is (or, given `pty`, a session of its own on the
/// pty's slave at that descriptor, see `tee`), and (Linux) to get SIGTERM if
/// the wrapper dies.
pub fn prepare(cmd: &mut Command, terminal: Option<&Terminal>, pty: Option<i32>) {
    match pty {
        Some(fd) => sys::own_session_on(cmd, fd),
        None => sys::own_group(cmd, terminal.and_then(Terminal::handover_fd)),
    }
    sys::terminate_with_parent(cmd);
}

/// What to do when the command is stopped (Ctrl-Z) and it does not share
/// the wrapper's terminal: (its group, the signal).
pub type StopHook = Arc<dyn Fn(u32, i32) + Send + Sync>;

/// Linux: orphaned descendants become the wrapper's children, not init's.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        eprintln!("agentfs: cannot become a child subreaper ({e}); daemonised processes may outlive the wrapper");
    }
}

/// What the waiting thread and the signal thread share.
pub struct Shared {
    leader: u32,
    grace: Duration,
    home: Home,
    /// When a stop signal's grace period ends.
    deadline: Mutex<Option<Instant>>,
    /// The leader has been reaped: from now on the waiting thread stops the rest.
    leader_done: AtomicBool,
    /// Where the exits of reaped descendants are recorded.
    exits: Arc<LiveRecord>,
}

/// The running command.
pub struct Tree {
    shared: Arc<Shared>,
    terminal: Option<Terminal>,
    on_stop: Option<StopHook>,
}

impl Tree {
    /// Takes charge of the command whose first process is `leader`.
    pub fn new(leader: u32, terminal: Option<Terminal>, grace: Duration, home: Home, exits: Arc<LiveRecord>) -> Tree {
        if let Some(t) = &terminal {
            t.give(leader);
        }
        let leader_done = AtomicBool::new(false);
        let shared = Arc::new(Shared { leader, grace, home, deadline: Mutex::new(None), leader_done, exits });
        Tree { shared, terminal, on_stop: None }
    }

    /// Calls `hook` when the command is stopped (instead of mirroring the stop on the shared terminal).
    pub fn on_stop(mut self, hook: Option<StopHook>) -> Tree {
        self.on_stop = hook;
        self
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Waits for the leader (mirroring its job-control stops), then stops the
    /// rest of the tree; returns the leader's exit code (128 + signal).
    pub fn wait(self) -> u8 {
        let leader = Pid::from_raw(i32::try_from(self.shared.leader).unwrap_or(0));
        let status = loop {
            match waitpid(leader, WaitOptions::UNTRACED) {
                Ok(Some((_, st))) if st.stopped() => {
                    let signal = st.stopping_signal().unwrap_or(libc::SIGTSTP);
                    if let Some(t) = &self.terminal {
                        t.mirror_stop(self.shared.leader, signal);
                    } else if let Some(hook) = &self.on_stop {
                        hook(self.shared.leader, signal);
                    }
                }
                Ok(Some((_, st))) => break Some(st),
                Ok(None) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break None,
            }
        };
        self.shared.leader_done.store(true, Ordering::SeqCst);
        if let Some(t) = &self.terminal {
            t.take_back(self.shared.leader);
        }
        let deadline = self.shared.deadline.lock().map_or(None, |d| *d);
        stop::stop(|| self.shared.find(), deadline.unwrap_or_else(|| Instant::now() + self.shared.grace));
        status.map_or(1, exit_code)
    }
}

impl Shared {
    /// Sends `signal` to the command's process group.
    pub fn signal(&self, signal: i32) {
        sys::kill_group(self.leader, signal);
    }

    /// A stop signal arrived (and was passed on): once the grace period is
    /// over, whatever still runs is killed.
    pub fn request_stop(self: &Arc<Self>) {
        let Ok(mut deadline) = self.deadline.lock() else { return };
        if deadline.is_some() {
            return;
        }
        let at = Instant::now() + self.grace;
        *deadline = Some(at);
        let me = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            if !me.leader_done.load(Ordering::SeqCst) {
                stop::stop(|| me.find(), Instant::now());
            }
        });
    }

    /// Reaps exited processes that were adopted by the wrapper (never the
    /// leader, whose status the waiting thread collects), recording how each
    /// ended.
    pub fn reap_orphans(&self) {
        let Some(all) = agentfs_registry::proctree::list() else { return };
        let me = std::process::id();
        for p in all.iter().filter(|p| p.ppid == me && p.zombie && p.pid != self.leader) {
            if let Some(pid) = i32::try_from(p.pid).ok().and_then(Pid::from_raw) {
                if let Ok(Some((_, status))) = waitpid(Some(pid), WaitOptions::NOHANG) {
                    self.exits.note(p.pid, status);
                }
            }
        }
    }

    /// What of the tree still runs: the group if it has a live member, and
    /// every live descendant of the wrapper except the router's subtree.
    fn find(&self) -> Targets {
        self.reap_orphans();
        let me = std::process::id();
        let skip: Vec<u32> = pidfile::running(&self.home).into_iter().collect();
        #[cfg(target_os = "linux")]
        {
            let Some(all) = agentfs_registry::proctree::list() else { return Targets::default() };
            let live: BTreeSet<u32> = all.iter().filter(|p| !p.zombie).map(|p| p.pid).collect();
            let group = all.iter().any(|p| p.pgid == self.leader && !p.zombie).then_some(self.leader);
            let pids = agentfs_registry::proctree::descendants(&all, me, &skip);
            Targets { group, pids: pids.intersection(&live).copied().collect() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let group = sys::kill_group(self.leader, 0).then_some(self.leader);
            Targets { group, pids: descendants_of(me, &skip) }
        }
    }
}

/// macOS: the live tree under `root`, read child by child.
#[cfg(not(target_os = "linux"))]
fn descendants_of(root: u32, skip: &[u32]) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        #[cfg(target_os = "macos")]
        let children = sys::child_pids(pid);
        #[cfg(not(target_os = "macos"))]
        let children: Vec<u32> = {
            let _ = pid;
            Vec::new()
        };
        for c in children {
            if !skip.contains(&c) && c != root && found.insert(c) {
                todo.push(c);
            }
        }
    }
    found
}

/// The command's status: its exit code, or 128 + the signal that killed it.
pub fn exit_code(status: WaitStatus) -> u8 {
    let code = status.exit_status().or_else(|| status.terminating_signal().map(|s| 128 + s)).unwrap_or(1);
    u8::try_from(code).unwrap_or(1)
}
