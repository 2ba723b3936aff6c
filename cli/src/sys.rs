//! The CLI's only unsafe code: two system calls std does not wrap.
#![allow(unsafe_code)]

use std::process::Command;

/// Sends `signal` to process `pid`; false if it is gone.
pub fn kill(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with a positive pid has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Makes the spawned process leader of a new session: detached from the
/// terminal (no SIGINT/SIGHUP from it), for the router daemon.
pub fn detach_on_spawn(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setsid(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}
