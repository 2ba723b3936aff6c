//! Socket options on converted sockets. A Unix socket refuses TCP-, IP- and
//! IPv6-level options (and SO_REUSEPORT) with EOPNOTSUPP, which silently
//! breaks servers: asyncio drops every connection when TCP_NODELAY fails.
//! Here those options are validated as a TCP socket would validate them,
//! kept, and read back; SO_DOMAIN/SO_PROTOCOL read as the original.

use libc::{c_int, c_void, socklen_t};

use crate::fdtable::{self, FdState};
use crate::guard::{Outcome, Pass};
use crate::hooks::socket::state_or_recognize;
use crate::macros::hooks;
use crate::options::{self, is_faked_level};
use crate::sockaddr::Addr;
use crate::{errno, sys};

hooks! {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t)
        => on_setsockopt, like libc::setsockopt;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t)
        => on_getsockopt, like libc::getsockopt;
}

/// Options the shim answers itself even when the kernel would accept them.
fn always_faked(level: c_int, name: c_int) -> bool {
    is_faked_level(level) || (level == libc::SOL_SOCKET && name == libc::SO_REUSEPORT)
}

unsafe fn on_setsockopt(
    real: setsockopt::Fn,
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> Outcome {
    if value.is_null() {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: setsockopt(2)'s contract: `value` points to `len` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), len as usize) };
    if let Some(st) = fdtable::get(fd) {
        if always_faked(level, name) {
            return store(fd, st, level, name, bytes);
        }
    } else if !always_faked(level, name) && level != libc::SOL_SOCKET {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: the caller's own arguments.
    let r = unsafe { real(fd, level, name, value, len) };
    if r == 0 {
        errno::preserve(|| refresh_stored(fd, level, name));
        return Outcome::Done(0);
    }
    let err = errno::get();
    if !options::is_unsupported(err) {
        return Outcome::Done(r);
    }
    match state_or_recognize(fd) {
        Some(st) => store(fd, st, level, name, bytes),
        None => Outcome::Done(errno::fail(err)),
    }
}

/// After the kernel took a SOL_SOCKET option: a value the store holds for
/// it (a TCP default kept at the swap, see `swap`) becomes what the kernel
/// now reads.
fn refresh_stored(fd: c_int, level: c_int, name: c_int) {
    if level != libc::SOL_SOCKET || fdtable::get(fd).is_none_or(|st| st.options.get(level, name).is_none()) {
        return;
    }
    if let Ok(v) = sys::getsockopt_int(fd, level, name) {
        fdtable::update(fd, |s| {
            s.options.set(level, name, &v.to_ne_bytes());
        });
    }
}

/// Validates the value as a TCP socket of the original family would, then
/// keeps it.
fn store(fd: c_int, st: FdState, level: c_int, name: c_int, bytes: &[u8]) -> Outcome {
    if let Err(e) = validate(st.local, level, name, bytes) {
        return Outcome::Done(errno::fail(e));
    }
    fdtable::update(fd, |s| {
        s.options.set(level, name, bytes);
    });
    Outcome::Done(0)
}

fn validate(family: Addr, level: c_int, name: c_int, bytes: &[u8]) -> Result<(), c_int> {
    let is_int_flag = (level, name) == (libc::IPPROTO_TCP, libc::TCP_NODELAY);
    if is_int_flag {
        return if bytes.len() >= std::mem::size_of::<c_int>() { Ok(()) } else { Err(libc::EINVAL) };
    }
    match probe(family) {
        Some(tcp) => sys::setsockopt_bytes(tcp.raw(), level, name, bytes),
        None => Ok(()),
    }
}

/// A fresh TCP socket of the original family, to learn what TCP would say.
fn probe(family: Addr) -> Option<sys::Fd> {
    let domain = if family.v6 { libc::AF_INET6 } else { libc::AF_INET };
    sys::socket(domain, libc::SOCK_STREAM).ok()
}

unsafe fn on_getsockopt(
    real: getsockopt::Fn,
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut c_void,
    len: *mut socklen_t,
) -> Outcome {
    if value.is_null() || len.is_null() {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: getsockopt(2)'s contract: `len` points to the size of `value`'s buffer.
    let out = unsafe { OptOut::new(value, len) };
    if let Some(st) = fdtable::get(fd) {
        if let Some(done) = answer(fd, st, level, name, &out) {
            return done;
        }
    } else if !always_faked(level, name) && level != libc::SOL_SOCKET {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: the caller's own arguments.
    let r = unsafe { real(fd, level, name, value, len) };
    let err = errno::get();
    let asks_domain = r == 0 && is_domain_query(level, name, out.read_int());
    if !(asks_domain || (r < 0 && options::is_unsupported(err))) {
        return Outcome::Done(r);
    }
    match state_or_recognize(fd).and_then(|st| answer(fd, st, level, name, &out)) {
        Some(done) => done,
        None if r < 0 => Outcome::Done(errno::fail(err)),
        None => Outcome::Done(r),
    }
}

/// SO_DOMAIN read as AF_UNIX, or SO_PROTOCOL as 0: what a converted socket
/// says before the shim corrects it.
#[cfg(target_os = "linux")]
fn is_domain_query(level: c_int, name: c_int, value: Option<c_int>) -> bool {
    level == libc::SOL_SOCKET
        && ((name == libc::SO_DOMAIN && value == Some(libc::AF_UNIX))
            || (name == libc::SO_PROTOCOL && value == Some(0)))
}

#[cfg(not(target_os = "linux"))]
fn is_domain_query(_level: c_int, _name: c_int, _value: Option<c_int>) -> bool {
    false
}

/// The answer for a converted socket, or `None` to let the kernel answer.
fn answer(fd: c_int, st: FdState, level: c_int, name: c_int, out: &OptOut) -> Option<Outcome> {
    #[cfg(not(target_os = "linux"))]
    let _ = fd; // TCP_INFO is answered from the descriptor on Linux only
    #[cfg(target_os = "linux")]
    if (level, name) == (libc::IPPROTO_TCP, libc::TCP_INFO) {
        return tcp_info(fd, st, out);
    }
    #[cfg(target_os = "linux")]
    if level == libc::SOL_SOCKET && name == libc::SO_DOMAIN {
        let family = if st.local.v6 { libc::AF_INET6 } else { libc::AF_INET };
        return Some(out.write(&family.to_ne_bytes()));
    }
    #[cfg(target_os = "linux")]
    if level == libc::SOL_SOCKET && name == libc::SO_PROTOCOL {
        return Some(out.write(&libc::IPPROTO_TCP.to_ne_bytes()));
    }
    if let Some(v) = st.options.get(level, name) {
        return Some(out.write(v));
    }
    if !always_faked(level, name) {
        return None;
    }
    let tcp = probe(st.local)?;
    let mut buf = [0u8; 256];
    let room = out.room().min(buf.len());
    Some(match sys::getsockopt_bytes(tcp.raw(), level, name, &mut buf[..room]) {
        Ok(n) => out.write(&buf[..n]),
        Err(e) => Outcome::Done(errno::fail(e)),
    })
}

/// TCP_INFO with the state the converted socket has (`tcpinfo`).
#[cfg(target_os = "linux")]
fn tcp_info(fd: c_int, st: FdState, out: &OptOut) -> Option<Outcome> {
    use crate::fdtable::Kind;
    use crate::tcpinfo::{self, Role};
    let role = match st.kind {
        Kind::Listener if sys::is_listening(fd) => Role::Listening,
        Kind::Listener | Kind::Free => Role::Unconnected,
        Kind::Conn | Kind::Client if st.reset => Role::Unconnected,
        Kind::Conn | Kind::Client => Role::Connected,
    };
    let mut buf = [0u8; 512];
    let n = tcpinfo::fill(fd, role, st.local.v6, &mut buf)?;
    let n = n.min(out.room());
    Some(out.write(&buf[..n]))
}

/// getsockopt's `(value, len)` out-parameters.
struct OptOut {
    value: *mut c_void,
    len: *mut socklen_t,
}

impl OptOut {
    /// # Safety
    /// `len` points to a writable length and `value` to that many writable bytes.
    unsafe fn new(value: *mut c_void, len: *mut socklen_t) -> OptOut {
        OptOut { value, len }
    }

    fn room(&self) -> usize {
        // SAFETY: constructor contract.
        unsafe { *self.len as usize }
    }

    /// Copies at most the caller's buffer and reports the length copied,
    /// as the kernel does for option values.
    fn write(&self, bytes: &[u8]) -> Outcome {
        let n = self.room().min(bytes.len());
        // SAFETY: `value` has at least `room()` >= n writable bytes; no overlap with our slice.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.value.cast::<u8>(), n);
            *self.len = n as socklen_t;
        }
        Outcome::Done(0)
    }

    fn read_int(&self) -> Option<c_int> {
        if self.room() < std::mem::size_of::<c_int>() {
            return None;
        }
        // SAFETY: at least an int's worth of bytes was written by the kernel.
        Some(unsafe { std::ptr::read_unaligned(self.value.cast::<c_int>()) })
    }
}
