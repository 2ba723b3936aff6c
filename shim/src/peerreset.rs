//! Writes on a converted connection after the peer has closed. On a Unix
//! socket the first such write fails with EPIPE (and SIGPIPE); on TCP it is
//! accepted, the peer's kernel answers with a reset, and only the next write
//! fails. A program without a SIGPIPE handler would die one write early. So
//! writes on converted connections carry MSG_NOSIGNAL until the first EPIPE,
//! which is reported as success and marks the connection reset (a write of
//! nothing is 0, as on TCP, and resets nothing); after that
//! writes go to the kernel unchanged (EPIPE, SIGPIPE), getpeername says
//! ENOTCONN and TCP_INFO says CLOSE, as for a reset TCP socket.

use libc::{c_int, ssize_t};

use crate::errno;
use crate::fdtable::{self, FdState, Kind};
use crate::guard::{Outcome, Pass};

/// The state of `fd` when it is a converted connection not yet reset.
pub fn live_connection(fd: c_int) -> Option<FdState> {
    if !matches!(fdtable::kind(fd), Kind::Conn | Kind::Client) {
        return None;
    }
    fdtable::get(fd).filter(|s| !s.reset)
}

/// A write of `len` bytes on `fd` with the app's `flags` (0 for write());
/// `send(flags)` makes it as a send with those flags. Passes through unless
/// `fd` is a live connection.
pub fn write(fd: c_int, len: usize, flags: c_int, send: impl FnOnce(c_int) -> ssize_t) -> Outcome<ssize_t> {
    match live_connection(fd) {
        Some(st) => Outcome::Done(on_live(fd, st, len, flags, send)),
        None => Outcome::Pass(Pass::NotOurs),
    }
}

/// The write on a live connection (see the module doc). An EPIPE that is
/// not the peer's doing (the app shut its own side) stays EPIPE, with the
/// SIGPIPE the kernel would have sent.
pub fn on_live(fd: c_int, st: FdState, len: usize, flags: c_int, send: impl FnOnce(c_int) -> ssize_t) -> ssize_t {
    let r = send(flags | libc::MSG_NOSIGNAL);
    if r >= 0 || errno::get() != libc::EPIPE {
        return r;
    }
    if !st.shut_wr {
        // Nothing sent, nothing to reset: TCP answers 0.
        if len > 0 {
            fdtable::update(fd, |s| s.reset = true);
        }
        return len as ssize_t;
    }
    if flags & libc::MSG_NOSIGNAL == 0 {
        // SAFETY: raise has no preconditions; SIGPIPE goes to this thread, as the kernel's would.
        errno::preserve(|| unsafe { libc::raise(libc::SIGPIPE) });
    }
    r
}
