//! Hooks on starting programs: execve, execv, execvp, execvpe and
//! posix_spawn(p). Each asks `spawn::plan` whether the launch would lose the
//! shim (a SIP-protected `/usr/bin/env` or `/bin/sh` on macOS, a child
//! environment without the preload variable) and, if so, launches the
//! rewritten plan instead; otherwise the original call runs untouched.

use libc::{c_char, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

use crate::guard::{Outcome, Pass};
use crate::macros::hooks;
use crate::spawn::{self, environ};

hooks! {
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) => on_execve, like libc::execve;
    fn execv(path: *const c_char, argv: *const *const c_char) => on_execv, like libc::execv;
    fn execvp(file: *const c_char, argv: *const *const c_char) => on_execvp, like libc::execvp;
    #[cfg(target_os = "linux")]
    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char)
        => on_execvpe, like libc::execvpe;
    fn posix_spawn(
        pid: *mut pid_t,
        path: *const c_char,
        actions: *const posix_spawn_file_actions_t,
        attr: *const posix_spawnattr_t,
        argv: *const *mut c_char,
        envp: *const *mut c_char,
    ) => on_posix_spawn, like libc::posix_spawn;
    fn posix_spawnp(
        pid: *mut pid_t,
        file: *const c_char,
        actions: *const posix_spawn_file_actions_t,
        attr: *const posix_spawnattr_t,
        argv: *const *mut c_char,
        envp: *const *mut c_char,
    ) => on_posix_spawnp, like libc::posix_spawnp;
}

/// Runs a planned launch through the original execve.
///
/// # Safety
/// exec's contract: a C string and NULL-terminated arrays of C strings.
unsafe fn exec_planned(
    path: *const c_char,
    search: bool,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Outcome {
    // SAFETY: this function's contract.
    let Some(plan) = (unsafe { spawn::plan(path, search, argv, envp) }) else { return Outcome::Pass(Pass::NotOurs) };
    let Some(real) = execve::original() else { return Outcome::Pass(Pass::Failed) };
    // SAFETY: the plan's path and NULL-terminated arrays live until the call returns.
    Outcome::Done(unsafe { real(plan.path.as_ptr(), plan.argv(), plan.env()) })
}

unsafe fn on_execve(
    _real: execve::Fn,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Outcome {
    // SAFETY: the caller's own exec arguments.
    unsafe { exec_planned(path, false, argv, envp) }
}

unsafe fn on_execv(_real: execv::Fn, path: *const c_char, argv: *const *const c_char) -> Outcome {
    // SAFETY: the caller's own exec arguments.
    unsafe { exec_planned(path, false, argv, environ()) }
}

unsafe fn on_execvp(_real: execvp::Fn, file: *const c_char, argv: *const *const c_char) -> Outcome {
    // SAFETY: the caller's own exec arguments.
    unsafe { exec_planned(file, true, argv, environ()) }
}

#[cfg(target_os = "linux")]
unsafe fn on_execvpe(
    _real: execvpe::Fn,
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Outcome {
    // SAFETY: the caller's own exec arguments.
    unsafe { exec_planned(file, true, argv, envp) }
}

/// Runs a planned spawn through the original posix_spawn (the path is resolved).
///
/// # Safety
/// posix_spawn's contract for every argument.
#[allow(clippy::too_many_arguments)]
unsafe fn spawn_planned(
    pid: *mut pid_t,
    file: *const c_char,
    search: bool,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> Outcome {
    let envp = if envp.is_null() { environ() } else { envp.cast() };
    // SAFETY: this function's contract.
    let Some(plan) = (unsafe { spawn::plan(file, search, argv.cast(), envp) }) else {
        return Outcome::Pass(Pass::NotOurs);
    };
    let Some(real) = posix_spawn::original() else { return Outcome::Pass(Pass::Failed) };
    // SAFETY: the caller's pid/actions/attr pointers, and the plan's strings and
    // arrays, which live until the call returns.
    let r = unsafe { real(pid, plan.path.as_ptr(), actions, attr, plan.argv().cast(), plan.env().cast()) };
    Outcome::Done(r)
}

unsafe fn on_posix_spawn(
    _real: posix_spawn::Fn,
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> Outcome {
    // SAFETY: the caller's own posix_spawn arguments.
    unsafe { spawn_planned(pid, path, false, actions, attr, argv, envp) }
}

unsafe fn on_posix_spawnp(
    _real: posix_spawnp::Fn,
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> Outcome {
    // SAFETY: the caller's own posix_spawn arguments.
    unsafe { spawn_planned(pid, file, true, actions, attr, argv, envp) }
}
