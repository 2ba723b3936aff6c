//! Small safe wrappers over the system calls the shim makes for itself.
//! Calls to hooked functions from inside a hook reach libc directly: the
//! re-entrancy guard (`guard`) passes them through.

use std::mem::size_of;

use libc::{c_int, socklen_t};

use crate::errno;
use crate::sockaddr::Name;

/// A descriptor the shim opened, closed on drop unless released.
pub struct Fd(c_int);

impl Fd {
    pub fn raw(&self) -> c_int {
        self.0
    }
    /// Gives up ownership without closing.
    pub fn release(self) -> c_int {
        let fd = self.0;
        std::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        errno::preserve(|| {
            // SAFETY: we own this descriptor.
            unsafe { libc::close(self.0) };
        });
    }
}

/// `socket(2)`, close-on-exec (atomically where the system can); errno on failure.
pub fn socket(domain: c_int, ty: c_int) -> Result<Fd, c_int> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let ty = ty | libc::SOCK_CLOEXEC;
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::socket(domain, ty, 0) };
    if fd < 0 {
        return Err(errno::get());
    }
    let fd = Fd(fd);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fcntl_set(fd.raw(), libc::F_SETFD, libc::FD_CLOEXEC)?;
    Ok(fd)
}

/// Whether something accepts on the Unix socket at `path`, without ever
/// blocking: a full backlog (EAGAIN) counts as accepting.
pub fn unix_accepts(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(target) = agentfs_registry::sunpath::SockPath::new(path) else { return true };
    let Some((un, len)) = crate::sockaddr::unix(target.as_path().as_os_str().as_bytes()) else { return true };
    let Ok(s) = socket(libc::AF_UNIX, libc::SOCK_STREAM) else { return true };
    let Ok(flags) = fcntl_get(s.raw(), libc::F_GETFL) else { return true };
    if fcntl_set(s.raw(), libc::F_SETFL, flags | libc::O_NONBLOCK).is_err() {
        return true;
    }
    // SAFETY: `un` is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::connect(s.raw(), (&raw const un).cast(), len) } == 0 {
        return true;
    }
    !matches!(errno::get(), libc::ECONNREFUSED | libc::ENOENT)
}

/// An `int`-valued socket option.
pub fn getsockopt_int(fd: c_int, level: c_int, name: c_int) -> Result<c_int, c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes given.
    let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &mut len) };
    if r < 0 { Err(errno::get()) } else { Ok(v) }
}

/// Reads an option into `buf`; returns the length written.
pub fn getsockopt_bytes(fd: c_int, level: c_int, name: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    let mut len = buf.len() as socklen_t;
    // SAFETY: `buf` is writable for `len` bytes.
    let r = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 { Err(errno::get()) } else { Ok(len as usize) }
}

pub fn setsockopt_bytes(fd: c_int, level: c_int, name: c_int, value: &[u8]) -> Result<(), c_int> {
    // SAFETY: `value` is readable for its length.
    let r = unsafe { libc::setsockopt(fd, level, name, value.as_ptr().cast(), value.len() as socklen_t) };
    if r < 0 { Err(errno::get()) } else { Ok(()) }
}

pub fn setsockopt_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

/// The socket's own name as the kernel has it.
pub fn sock_name(fd: c_int) -> Option<Name> {
    let mut n = Name::empty();
    let (addr, len) = n.as_mut_ptrs();
    // SAFETY: `addr`/`len` describe `n`'s storage.
    (unsafe { libc::getsockname(fd, addr, len) } == 0).then_some(n)
}

/// The socket's peer name as the kernel has it.
pub fn peer_name(fd: c_int) -> Option<Name> {
    let mut n = Name::empty();
    let (addr, len) = n.as_mut_ptrs();
    // SAFETY: `addr`/`len` describe `n`'s storage.
    (unsafe { libc::getpeername(fd, addr, len) } == 0).then_some(n)
}

/// `SOCK_STREAM`, `SOCK_DGRAM`, ...
pub fn socket_type(fd: c_int) -> Option<c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()
}

/// Whether the socket is listening.
pub fn is_listening(fd: c_int) -> bool {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_ok_and(|v| v != 0)
}

/// Whether the other end of a connected socket has closed or shut down its
/// writing (the kernel says POLLRDHUP; POLLHUP where that does not exist).
pub fn peer_closed(fd: c_int) -> bool {
    #[cfg(target_os = "linux")]
    let hangup = libc::POLLRDHUP;
    #[cfg(not(target_os = "linux"))]
    let hangup = libc::POLLHUP;
    let mut p = libc::pollfd { fd, events: hangup, revents: 0 };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & hangup != 0
}

/// Gives a converted connection the send buffer a loopback TCP connection
/// grows to (`tcp_wmem`'s maximum; TCP tunes its buffer itself, a Unix
/// socket keeps its 208 KiB default, and writes would block far sooner than
/// on TCP). Only for sockets whose buffer the app never set.
pub fn tcp_like_send_buffer(fd: c_int) {
    use std::sync::atomic::{AtomicI32, Ordering};
    static MAX: AtomicI32 = AtomicI32::new(-1);
    let mut max = MAX.load(Ordering::Relaxed);
    if max < 0 {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
        max = text.split_whitespace().nth(2).and_then(|v| v.parse().ok()).unwrap_or(0);
        MAX.store(max, Ordering::Relaxed);
    }
    if max > 0 {
        // The kernel doubles the value set (and caps it at wmem_max first).
        let _ = errno::preserve(|| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, max / 2));
    }
}

/// The inode number of whatever `fd` is.
pub fn inode(fd: c_int) -> Option<u64> {
    // SAFETY: an all-zero stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-buffer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino as u64)
}

/// `fcntl(fd, cmd)` for commands without an argument.
pub fn fcntl_get(fd: c_int, cmd: c_int) -> Result<c_int, c_int> {
    // SAFETY: `cmd` is one of the F_GET* commands, which take no argument.
    let r = unsafe { libc::fcntl(fd, cmd) };
    if r < 0 { Err(errno::get()) } else { Ok(r) }
}

/// `fcntl(fd, cmd, arg)` for commands with an `int` argument.
pub fn fcntl_set(fd: c_int, cmd: c_int, arg: c_int) -> Result<c_int, c_int> {
    // SAFETY: `cmd` is one of the F_SET* commands taking an int.
    let r = unsafe { libc::fcntl(fd, cmd, arg) };
    if r < 0 { Err(errno::get()) } else { Ok(r) }
}

/// A close-on-exec duplicate of `fd`, above the low numbers that other
/// threads' opens expect to get (anywhere when the limit is lower).
pub fn dup(fd: c_int) -> Result<Fd, c_int> {
    fcntl_set(fd, libc::F_DUPFD_CLOEXEC, 100).or_else(|_| fcntl_set(fd, libc::F_DUPFD_CLOEXEC, 0)).map(Fd)
}

/// Puts `from` at descriptor number `to` (atomically closing what was there).
pub fn dup_onto(from: c_int, to: c_int, cloexec: bool) -> Result<(), c_int> {
    #[cfg(target_os = "linux")]
    {
        let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: plain system call with descriptor numbers.
        let r = unsafe { libc::dup3(from, to, flags) };
        if r < 0 { Err(errno::get()) } else { Ok(()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: plain system call with descriptor numbers.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(errno::get());
        }
        let fd_flags = if cloexec { libc::FD_CLOEXEC } else { 0 };
        fcntl_set(to, libc::F_SETFD, fd_flags).map(drop)
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    agentfs_registry::liveness::now_ms()
}
