//! The wrapper behaves like the command it runs: a signal sent to the
//! wrapper goes to the command's whole process group, and a stop signal
//! (SIGINT, SIGTERM, SIGHUP, SIGQUIT) also starts the grace period after
//! which what still runs is killed. The command has a process group of its
//! own, so the terminal's Ctrl-C reaches it directly (its group is in front)
//! and never through the wrapper as well: each signal arrives once.

use std::sync::Arc;
use std::thread;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::tree;

/// The signals the wrapper catches and passes on.
const FORWARDED: [i32; 6] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// Catches the signals now (before the command exists, so none is lost);
/// call [`Forwarder::to`] once it runs.
pub struct Forwarder {
    signals: Signals,
}

impl Forwarder {
    pub fn install() -> Result<Forwarder> {
        let mut caught = FORWARDED.to_vec();
        caught.push(SIGCHLD);
        let signals = Signals::new(caught).context("cannot install signal handlers")?;
        Ok(Forwarder { signals })
    }

    /// Passes signals on to `tree` from now on; SIGCHLD reaps the processes
    /// the wrapper adopted.
    pub fn to(mut self, tree: Arc<tree::Shared>) {
        thread::spawn(move || {
            for signal in &mut self.signals {
                if signal == SIGCHLD {
                    tree.reap_orphans();
                    continue;
                }
                tree.signal(signal);
                if is_stop(signal) {
                    tree.request_stop();
                }
            }
        });
    }
}

/// Whether a signal asks the wrapped command to end.
pub fn is_stop(signal: i32) -> bool {
    matches!(signal, SIGINT | SIGTERM | SIGHUP | SIGQUIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals() {
        assert!(is_stop(SIGINT) && is_stop(SIGTERM) && is_stop(SIGHUP) && is_stop(SIGQUIT));
        assert!(!is_stop(SIGUSR1) && !is_stop(SIGUSR2));
    }
}
