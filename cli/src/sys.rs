//! The CLI's only unsafe code: the system calls std does not wrap.
#![allow(unsafe_code)]

use std::process::Command;

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

/// Puts the spawned command in a process group of its own and, with a
/// terminal descriptor, makes that group the terminal's foreground group
/// before it runs (the wrapper does it too, after the spawn: whichever comes
/// first wins, as in a shell).
pub fn own_group(cmd: &mut Command, terminal: Option<i32>) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let Some(fd) = terminal else { return };
    // SAFETY: the closure runs in the child between fork and exec (after std
    // has put it in its own group and emptied its signal mask) and only calls
    // sigemptyset/sigaddset/pthread_sigmask, tcsetpgrp(3) and getpid(2), all
    // async-signal-safe; the mask is left empty, as std leaves it.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::tcsetpgrp(fd, libc::getpid());
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Makes the spawned command leader of a new session whose controlling
/// terminal is the one on its descriptor `tty` (a pty's slave, for
/// `wrap --log`): its process group is its own, as with [`own_group`].
pub fn own_session_on(cmd: &mut Command, tty: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setsid(2) and ioctl(2) with TIOCSCTTY and an integer argument,
    // both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(tty, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The foreground process group of the terminal on `fd`, if `fd` is this
/// process's controlling terminal.
pub fn foreground_group(fd: i32) -> Option<u32> {
    // SAFETY: isatty(3) and tcgetpgrp(3) only read the descriptor's state.
    let pgid = unsafe { if libc::isatty(fd) == 1 { libc::tcgetpgrp(fd) } else { -1 } };
    u32::try_from(pgid).ok().filter(|&p| p > 0)
}

/// Makes `pgid` the foreground group of the terminal on `fd`, with SIGTTOU
/// and SIGTTIN blocked in this thread meanwhile: a process in a background
/// group would otherwise be stopped for trying.
pub fn set_foreground_group(fd: i32, pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return false };
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset; the mask
    // change is this thread's only and is undone before returning;
    // tcsetpgrp(3) has no memory-safety preconditions.
    unsafe {
        let (mut set, mut old): (libc::sigset_t, libc::sigset_t) = (std::mem::zeroed(), std::mem::zeroed());
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::sigaddset(&mut set, libc::SIGTTIN);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let ok = libc::tcsetpgrp(fd, pgid) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        ok
    }
}

/// This process's process group.
pub fn own_group_id() -> u32 {
    // SAFETY: getpgrp(2) cannot fail and touches no memory.
    u32::try_from(unsafe { libc::getpgrp() }).unwrap_or(0)
}

/// Sends `signal` to every process of group `pgid`; false if none is left.
pub fn kill_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return false };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill(2) with a negative pid below -1 signals that group only.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Sends `signal` to process `pid`; false if it is not there (or not ours).
pub fn kill(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 1 {
        return false;
    }
    // SAFETY: kill(2) with a positive pid signals that process only.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Restores SIGPIPE's default action (Rust ignores it), so that a command
/// printing into a closed pipe (`agentfs ps | head -1`) ends quietly as
/// other tools do instead of failing on the write. Only for commands that
/// print and hold nothing: a router or a wrapper must not die of a peer
/// that left.
pub fn default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler; it changes only this
    // process's disposition of SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Stops this process with `signal` (a job-control stop) until SIGCONT.
pub fn stop_self(signal: i32) {
    // SAFETY: raise(3) has no memory-safety preconditions.
    unsafe { libc::raise(signal) };
}

/// The children of `pid` (macOS: `proc_listchildpids`).
#[cfg(target_os = "macos")]
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return Vec::new() };
    let mut buf = vec![0 as libc::pid_t; 4096];
    let bytes = libc::c_int::try_from(buf.len() * std::mem::size_of::<libc::pid_t>()).unwrap_or(0);
    // SAFETY: the buffer is valid for `bytes` bytes of pid_t; the call
    // returns how many pids it wrote (at most what fits).
    let n = unsafe { libc::proc_listchildpids(pid, buf.as_mut_ptr().cast(), bytes) };
    buf.truncate(usize::try_from(n).unwrap_or(0).min(buf.len()));
    buf.into_iter().filter_map(|p| u32::try_from(p).ok()).filter(|&p| p > 0).collect()
}

/// macOS: the listening sockets launchd holds for this job under each of
/// `names` (the LaunchAgent's `Sockets`, see `install`), through
/// `launch_activate_socket(3)`; none when the process is not a launchd job
/// (`ESRCH`) or has no socket of that name (`ENOENT`).
#[cfg(target_vendor = "apple")]
pub fn launchd_sockets(names: &[&str]) -> std::io::Result<Vec<std::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    unsafe extern "C" {
        fn launch_activate_socket(
            name: *const libc::c_char,
            fds: *mut *mut libc::c_int,
            cnt: *mut libc::size_t,
        ) -> libc::c_int;
    }
    let mut out = Vec::new();
    for name in names {
        let name = std::ffi::CString::new(*name)?;
        let (mut fds, mut cnt): (*mut libc::c_int, libc::size_t) = (std::ptr::null_mut(), 0);
        // SAFETY: `name` is a NUL-terminated string that outlives the call;
        // `fds` and `cnt` are valid out-pointers; launchd allocates the array.
        let err = unsafe { launch_activate_socket(name.as_ptr(), &mut fds, &mut cnt) };
        match err {
            0 => {}
            libc::ESRCH | libc::ENOENT => continue,
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
        for i in 0..cnt {
            // SAFETY: launchd returned `cnt` descriptors in `fds`; each is a
            // listening socket now owned by this process, taken exactly once.
            out.push(unsafe { std::net::TcpListener::from_raw_fd(*fds.add(i)) });
        }
        // SAFETY: the array was allocated by launchd with malloc(3) for the caller to free.
        unsafe { libc::free(fds.cast()) };
    }
    Ok(out)
}
