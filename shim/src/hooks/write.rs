//! Plain writes (write, writev, send) and shutdown on converted connections,
//! so that a write after the peer closed behaves as on TCP (`peerreset`).
//! Every other descriptor costs one table look-up. Linux only (MSG_NOSIGNAL).

use libc::{c_int, c_void, iovec, size_t, ssize_t};

use crate::fdtable;
use crate::guard::Outcome;
use crate::macros::hooks;
use crate::peerreset;

hooks! {
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t => on_write, like libc::write;
    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t => on_writev, like libc::writev;
    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t => on_send, like libc::send;
    fn shutdown(fd: c_int, how: c_int) => on_shutdown, like libc::shutdown;
}

unsafe fn on_write(_real: write::Fn, fd: c_int, buf: *const c_void, n: size_t) -> Outcome<ssize_t> {
    // SAFETY: write(2)'s contract: `buf` has `n` readable bytes; on a socket, send() with flags is the same call.
    peerreset::write(fd, n, 0, |flags| unsafe { libc::send(fd, buf, n, flags) })
}

unsafe fn on_send(real: send::Fn, fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> Outcome<ssize_t> {
    // SAFETY: the caller's own arguments, with flags added.
    peerreset::write(fd, n, flags, |flags| unsafe { real(fd, buf, n, flags) })
}

unsafe fn on_writev(_real: writev::Fn, fd: c_int, iov: *const iovec, count: c_int) -> Outcome<ssize_t> {
    if iov.is_null() || count <= 0 {
        return Outcome::Pass(crate::guard::Pass::NotOurs);
    }
    // SAFETY: writev(2)'s contract: `iov` points to `count` iovecs.
    let vecs = unsafe { std::slice::from_raw_parts(iov, count as usize) };
    let len = vecs.iter().map(|v| v.iov_len).sum();
    peerreset::write(fd, len, 0, |flags| {
        // SAFETY: plain data, all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.cast_mut();
        msg.msg_iovlen = count as _;
        // SAFETY: the header points to the caller's iovecs; on a socket, sendmsg is writev with flags.
        unsafe { libc::sendmsg(fd, &msg, flags) }
    })
}

unsafe fn on_shutdown(real: shutdown::Fn, fd: c_int, how: c_int) -> Outcome {
    // SAFETY: integer arguments only.
    let r = unsafe { real(fd, how) };
    if r == 0 && (how == libc::SHUT_WR || how == libc::SHUT_RDWR) {
        fdtable::update(fd, |s| s.shut_wr = true);
    }
    Outcome::Done(r)
}
