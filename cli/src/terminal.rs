//! The terminal, shared with the wrapped command as a shell shares it with a
//! job: the command's process group gets the terminal while the wrapper is in
//! front (so Ctrl-C, Ctrl-Z and reads from the tty reach it as without
//! agentfs), the wrapper takes it back when the command is done or stopped,
//! and stops itself when the command is stopped (Ctrl-Z), so the shell sees
//! the job stop and `fg` brings both back.

use crate::sys;

/// The controlling terminal, found on stdin, else stdout or stderr.
pub struct Terminal {
    fd: i32,
    own_group: u32,
}

impl Terminal {
    /// This process's controlling terminal, if one of fds 0–2 is it.
    pub fn controlling() -> Option<Terminal> {
        let fd = (0..3).find(|&fd| sys::foreground_group(fd).is_some())?;
        Some(Terminal { fd, own_group: sys::own_group_id() })
    }

    /// The descriptor to hand the terminal over in the child, if the
    /// wrapper is in front now (started in the background, it is not).
    pub fn handover_fd(&self) -> Option<i32> {
        self.in_front().then_some(self.fd)
    }

    /// The wrapper's group holds the terminal.
    pub fn in_front(&self) -> bool {
        sys::foreground_group(self.fd) == Some(self.own_group)
    }

    /// Gives the terminal to `pgid` if the wrapper holds it.
    pub fn give(&self, pgid: u32) {
        if self.in_front() {
            sys::set_foreground_group(self.fd, pgid);
        }
    }

    /// Takes the terminal back from `pgid` if it still holds it.
    pub fn take_back(&self, pgid: u32) {
        if sys::foreground_group(self.fd) == Some(pgid) {
            sys::set_foreground_group(self.fd, self.own_group);
        }
    }

    /// The command's group `pgid` was stopped by `signal` (Ctrl-Z, a tty
    /// read in the background, SIGSTOP): the wrapper stops the same way; once
    /// continued (`fg`, `bg`) it continues the group, giving it the terminal
    /// again if the wrapper is in front.
    pub fn mirror_stop(&self, pgid: u32, signal: i32) {
        self.take_back(pgid);
        sys::stop_self(signal);
        self.give(pgid);
        sys::kill_group(pgid, libc::SIGCONT);
    }
}
