//! The CLI's only unsafe code: the system calls std does not wrap.
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

/// Linux: the spawned command gets SIGTERM if the wrapper dies without
/// passing one on (SIGKILL), so a killed wrapper leaves no orphan server
/// holding its socket.
pub fn terminate_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: `parent` is read before fork; the closure runs in the child
        // between fork and exec and only calls prctl(2), getppid(2) and
        // kill(2), all async-signal-safe.
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
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
