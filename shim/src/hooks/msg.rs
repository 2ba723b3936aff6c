//! Addresses on sends and receives of converted connections. TCP ignores a
//! destination given to sendto/sendmsg on a connected socket, where a Unix
//! socket fails with EISCONN; and TCP's recvfrom/recvmsg return no address
//! (length 0), where a Unix socket returns its peer's path. On descriptors
//! the shim tracks, the destination is dropped and the returned length is 0;
//! sends after the peer left behave as on TCP (`peerreset`).

use libc::{c_int, c_void, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::fdtable::{self, Kind};
use crate::guard::{Outcome, Pass};
use crate::hooks::socket::state_or_recognize;
use crate::macros::hooks;
use crate::sockaddr::Name;
use crate::{clientport, config, errno};

hooks! {
    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t)
        -> ssize_t => on_sendto, like libc::sendto;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t => on_sendmsg, like libc::sendmsg;
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t)
        -> ssize_t => on_recvfrom, like libc::recvfrom;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t => on_recvmsg, like libc::recvmsg;
}

/// A connection the shim converted (accepted or redirected).
fn is_connection(fd: c_int) -> bool {
    fdtable::get(fd).is_some_and(|s| matches!(s.kind, Kind::Conn | Kind::Client))
}

/// A send of `len` bytes with the app's `flags`, with a destination or not;
/// `send(dest, flags)` makes it, with the destination or without. On a
/// converted connection the destination is dropped and a write after the
/// peer left behaves as on TCP (`peerreset`).
fn send_with(
    fd: c_int,
    has_dest: bool,
    len: usize,
    flags: c_int,
    send: impl Fn(bool, c_int) -> ssize_t,
) -> Outcome<ssize_t> {
    #[cfg(not(target_os = "linux"))]
    let _ = len; // only Linux tracks a write after the peer left
    #[cfg(target_os = "linux")]
    if let Some(st) = crate::peerreset::live_connection(fd) {
        return Outcome::Done(crate::peerreset::on_live(fd, st, len, flags, |f| send(false, f)));
    }
    if !has_dest {
        return Outcome::Pass(Pass::NotOurs);
    }
    if is_connection(fd) {
        return Outcome::Done(send(false, flags));
    }
    let r = send(true, flags);
    if r < 0 && errno::get() == libc::EISCONN && state_or_recognize(fd).is_some_and(|s| s.kind != Kind::Listener) {
        return Outcome::Done(send(false, flags));
    }
    Outcome::Done(r)
}

unsafe fn on_sendto(
    real: sendto::Fn,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Outcome<ssize_t> {
    send_with(fd, !addr.is_null(), n, flags, |dest, flags| {
        let (a, l) = if dest { (addr, len) } else { (std::ptr::null(), 0) };
        // SAFETY: the caller's arguments, with the destination possibly dropped and flags added.
        unsafe { real(fd, buf, n, flags, a, l) }
    })
}

unsafe fn on_sendmsg(real: sendmsg::Fn, fd: c_int, msg: *const msghdr, flags: c_int) -> Outcome<ssize_t> {
    // SAFETY: sendmsg(2)'s contract: `msg` is null or a valid msghdr.
    let Some(m) = (unsafe { msg.as_ref() }) else { return Outcome::Pass(Pass::NotOurs) };
    let len = if m.msg_iov.is_null() {
        0
    } else {
        // SAFETY: sendmsg(2)'s contract: `msg_iov` points to `msg_iovlen` iovecs.
        unsafe { std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen as _) }.iter().map(|v| v.iov_len).sum()
    };
    send_with(fd, !m.msg_name.is_null(), len, flags, |dest, flags| {
        let mut copy = *m;
        if !dest {
            copy.msg_name = std::ptr::null_mut();
            copy.msg_namelen = 0;
        }
        // SAFETY: a copy of the caller's header, pointing to the caller's buffers.
        unsafe { real(fd, &copy, flags) }
    })
}

/// Whether the name a receive returned should read as TCP's "no address".
fn hide_name(fd: c_int, name: &Name) -> bool {
    if fdtable::get(fd).is_some() {
        return true;
    }
    if name.family() != libc::AF_UNIX || name.len as usize <= std::mem::size_of::<libc::sa_family_t>() {
        return false;
    }
    let in_run = || {
        let run = config::identity().map(|id| id.run_dir.as_os_str().as_encoded_bytes().to_vec());
        run.zip(name.unix_path()).is_some_and(|(run, path)| path.starts_with(&run))
    };
    (clientport::from_name(name).is_some() || in_run()) && state_or_recognize(fd).is_some()
}

/// A copy of the name the kernel wrote (`len` bytes at `addr`).
fn name_of(addr: *const c_void, len: socklen_t) -> Name {
    let mut name = Name::empty();
    let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: the kernel wrote `len` bytes at `addr` (at most the caller's buffer); `n` fits the storage.
    unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), (&raw mut name.storage).cast::<u8>(), n) };
    name.len = n as socklen_t;
    name
}

unsafe fn on_recvfrom(
    real: recvfrom::Fn,
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> Outcome<ssize_t> {
    if addr.is_null() || len.is_null() {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: the caller's own arguments.
    let r = unsafe { real(fd, buf, n, flags, addr, len) };
    // SAFETY: recvfrom(2)'s contract: `len` is a valid, writable length.
    if r >= 0 && errno::preserve(|| hide_name(fd, &name_of(addr.cast(), unsafe { *len }))) {
        // SAFETY: as above.
        unsafe { *len = 0 };
    }
    Outcome::Done(r)
}

unsafe fn on_recvmsg(real: recvmsg::Fn, fd: c_int, msg: *mut msghdr, flags: c_int) -> Outcome<ssize_t> {
    // SAFETY: recvmsg(2)'s contract: `msg` is null or a valid msghdr.
    let Some(m) = (unsafe { msg.as_mut() }) else { return Outcome::Pass(Pass::NotOurs) };
    if m.msg_name.is_null() {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: the caller's own arguments.
    let r = unsafe { real(fd, msg, flags) };
    // SAFETY: `msg` is still the caller's valid header, now filled in by the kernel.
    let m = unsafe { &mut *msg };
    if r >= 0 && errno::preserve(|| hide_name(fd, &name_of(m.msg_name, m.msg_namelen))) {
        m.msg_namelen = 0;
    }
    Outcome::Done(r)
}
