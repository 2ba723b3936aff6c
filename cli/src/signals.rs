//! The wrapper behaves like the command it runs: signals sent to it reach
//! the child. Signals the terminal sends to the whole foreground process
//! group (Ctrl-C, Ctrl-\, hangup) already reach the child, which shares the
//! wrapper's group, so only signals sent by a process (kill) are forwarded —
//! a Ctrl-C arrives once, not twice.

use std::thread;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

use crate::sys;

/// The signals the wrapper catches and forwards.
const FORWARDED: [i32; 6] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// Catches the signals now (before the child exists, so none is lost); call
/// [`Forwarder::to`] once the child runs.
pub struct Forwarder {
    signals: SignalsInfo<WithOrigin>,
}

impl Forwarder {
    pub fn install() -> Result<Forwarder> {
        let signals = SignalsInfo::<WithOrigin>::new(FORWARDED).context("cannot install signal handlers")?;
        Ok(Forwarder { signals })
    }

    /// Forwards from now on to `child`.
    pub fn to(mut self, child: u32) {
        thread::spawn(move || {
            for origin in &mut self.signals {
                if should_forward(origin.signal, &origin.cause) {
                    sys::kill(child, origin.signal);
                }
            }
        });
    }
}

/// Whether a signal the wrapper got should be sent on to the child.
pub fn should_forward(signal: i32, cause: &Cause) -> bool {
    let from_terminal = matches!(signal, SIGINT | SIGQUIT | SIGHUP);
    !from_terminal || matches!(cause, Cause::Sent(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signal_hook::low_level::siginfo::Sent;

    #[test]
    fn terminal_signals_are_not_doubled() {
        assert!(!should_forward(SIGINT, &Cause::Kernel), "Ctrl-C already reached the child");
        assert!(!should_forward(SIGHUP, &Cause::Unknown));
        assert!(should_forward(SIGINT, &Cause::Sent(Sent::User)), "kill -INT <wrapper>");
        assert!(should_forward(SIGTERM, &Cause::Kernel));
        assert!(should_forward(SIGTERM, &Cause::Sent(Sent::User)));
    }
}
