//! The agentfs shim, loaded into unmodified programs with `LD_PRELOAD`
//! (Linux) or `DYLD_INSERT_LIBRARIES` (macOS). It turns TCP listeners on
//! loopback/wildcard addresses into Unix sockets under
//! `$AGENTFS_HOME/run/<app>.<instance>.<port>.sock`, writes a sidecar when
//! they listen, and fakes everything the program can observe (addresses,
//! options, errno) so it never notices. It fails open: whenever anything
//! goes wrong, the original call is made.
//!
//! # Layout
//! - [`macros`] — `hooks!`: one declaration per hook, Linux export or macOS interpose.
//! - [`guard`] — re-entrancy guard, panic catcher, `Outcome`/`Pass`.
//! - [`hooks`] — the exported hooks: `socket` (socket, bind, listen, connect,
//!   accept, names), `sockopt`, `msg` (addresses on sends and receives), `write` (writes after the peer left, shutdown), `fd` (close, dup), `fcntl` (with `src/c/fcntl.c`), `exec`.
//! - [`convert`] — bind → Unix socket: names, conflicts, stale files.
//! - [`redirect`] — connect to loopback:<port> → the instance's own socket;
//!   [`targets`] — which one (TCP's family and address rules);
//!   [`unconvert`] — clients that bound before connect; [`clientport`] — the
//!   client port both ends report.
//! - [`elsewhere`] — another instance's port, refused as if the instance ran alone.
//! - [`peerreset`] — a write after the peer closed succeeds once, as on TCP.
//! - [`tcpinfo`] — TCP_INFO with the converted socket's real state.
//! - [`tcpheld`] — ports this process holds on real TCP (EADDRINUSE, not a conversion).
//! - [`swap`] — replacing a TCP socket with a Unix one under the same fd.
//! - [`announce`] — the sidecar, after listen.
//! - [`spawn`] — exec/posix_spawn plans that keep the shim alive (`hooks::exec`).
//! - [`recognize`] — descriptors that arrive without bookkeeping.
//! - [`fdtable`], [`listeners`], [`options`], [`lock`], [`process`], [`sockfile`] — allocation-free state.
//! - [`config`], [`log`], [`sockaddr`], [`sys`], [`errno`] — support.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod announce;
pub mod clientport;
pub mod config;
pub mod convert;
pub mod elsewhere;
pub mod errno;
pub mod fdtable;
pub mod guard;
pub mod hooks;
pub mod listeners;
pub mod lock;
pub mod log;
pub mod macros;
pub mod options;
#[cfg(target_os = "linux")]
pub mod peerreset;
pub mod process;
pub mod recognize;
pub mod redirect;
pub mod sockaddr;
pub mod sockfile;
pub mod spawn;
pub mod swap;
pub mod sys;
pub mod targets;
pub mod tcpheld;
#[cfg(target_os = "linux")]
pub mod tcpinfo;
pub mod unconvert;

/// Runs when the library is loaded, before the program's `main`: reads the
/// environment and resolves every original function while the process is
/// still single-threaded.
#[cfg(not(test))]
#[ctor::ctor(unsafe)]
fn agentfs_shim_init() {
    process::adopt();
    hooks::resolve_all();
    for problem in config::init() {
        log::warn(&problem);
    }
    std::panic::set_hook(Box::new(|info| {
        log::write_decision(-1, format_args!("internal error, original call made: {info}"));
    }));
    // SAFETY: both callbacks are plain extern "C" functions that live as long
    // as the process (a preloaded library is never unloaded).
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_child));
        libc::atexit(at_exit);
    }
}

/// In the child of a fork: locks held by the parent's other threads are free.
#[cfg(not(test))]
extern "C" fn after_fork_child() {
    lock::after_fork_child();
    process::adopt();
}

/// At exit: the socket files this process still holds go with it.
#[cfg(not(test))]
extern "C" fn at_exit() {
    let _ = guard::enter(listeners::remove_all_owned);
}
