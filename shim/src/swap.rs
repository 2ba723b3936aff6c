//! Replacing the app's TCP socket with a Unix one under the same descriptor
//! number. The replacement is built and bound first; only then is it put in
//! place with dup3, so a failure leaves the app's socket untouched. A client
//! connects after it is in place, with the app's socket kept aside to be
//! put back if that fails (`commit_keeping`). Everything the app set before
//! the swap comes along: file status flags (O_NONBLOCK, O_ASYNC),
//! close-on-exec, the SIGIO owner and signal, SOL_SOCKET options, and epoll
//! registrations (which the kernel drops with the old socket).

use libc::c_int;

use crate::options::{self, Options};
use crate::sys::{self, Fd};

/// A Unix socket ready to take the place of `target`.
pub struct Replacement {
    pub new: Fd,
    target: c_int,
    cloexec: bool,
    /// TCP-level options of the old socket, to read back later.
    pub options: Options,
    pub v6only: bool,
    pub reuseport: bool,
}

/// Builds the Unix replacement for `fd` (whose original family is v6 or not).
pub fn prepare(fd: c_int, v6: bool) -> Result<Replacement, &'static str> {
    prepare_in(fd, libc::AF_UNIX, v6)
}

/// Builds a replacement of `domain` for `fd`: a Unix socket, or a TCP socket
/// again for a converted socket that turns out to be a client (`unconvert`).
pub fn prepare_in(fd: c_int, domain: c_int, v6: bool) -> Result<Replacement, &'static str> {
    let new = sys::socket(domain, libc::SOCK_STREAM).map_err(|_| "cannot create the replacement socket")?;
    let cloexec = sys::fcntl_get(fd, libc::F_GETFD).map_err(|_| "F_GETFD failed")? & libc::FD_CLOEXEC != 0;
    copy_owner(fd, new.raw());
    let status = sys::fcntl_get(fd, libc::F_GETFL).map_err(|_| "F_GETFL failed")?;
    let carried_flags = status & (libc::O_NONBLOCK | libc::O_ASYNC);
    if carried_flags != 0 {
        sys::fcntl_set(new.raw(), libc::F_SETFL, carried_flags).map_err(|_| "F_SETFL failed")?;
    }
    let from_domain = match (domain, v6) {
        (libc::AF_UNIX, true) => libc::AF_INET6,
        (libc::AF_UNIX, false) => libc::AF_INET,
        _ => libc::AF_UNIX,
    };
    let mut options = Options::default();
    replay_socket_options(fd, from_domain, new.raw(), &mut options);
    let mut rep = Replacement { new, target: fd, cloexec, options, v6only: false, reuseport: false };
    carry_options(fd, v6, &mut rep);
    Ok(rep)
}

impl Replacement {
    /// Puts the replacement at the app's descriptor number.
    pub fn commit(self) -> Result<(), c_int> {
        let registrations = epoll::registrations(self.target);
        sys::dup_onto(self.new.raw(), self.target, self.cloexec)?;
        epoll::restore(self.target, &registrations);
        Ok(())
    }

    /// Puts the replacement at the app's descriptor number and keeps the
    /// app's socket aside, for a replacement that still has to connect
    /// there. The epoll registrations move to the replacement (left on the
    /// kept socket, they would go on reporting it under this number).
    pub fn commit_keeping(self) -> Result<Kept, c_int> {
        let registrations = epoll::registrations(self.target);
        let original = sys::dup(self.target)?;
        epoll::remove(self.target, &registrations);
        // Back on whichever socket is now at the number: the replacement, or the app's if that failed.
        let placed = sys::dup_onto(self.new.raw(), self.target, self.cloexec);
        epoll::restore(self.target, &registrations);
        placed?;
        Ok(Kept { original, target: self.target, cloexec: self.cloexec, registrations })
    }
}

/// The app's socket, set aside by [`Replacement::commit_keeping`].
pub struct Kept {
    original: Fd,
    target: c_int,
    cloexec: bool,
    registrations: Vec<epoll::Registration>,
}

impl Kept {
    /// Puts the app's socket back (the replacement's registrations close with it).
    pub fn restore(self) -> Result<(), c_int> {
        sys::dup_onto(self.original.raw(), self.target, self.cloexec)?;
        epoll::restore(self.target, &self.registrations);
        Ok(())
    }
}

/// F_SETOWN (and on Linux F_SETSIG): where SIGIO goes.
fn copy_owner(from: c_int, to: c_int) {
    #[cfg(target_os = "linux")]
    {
        // Linux's <fcntl.h> values, which the libc crate does not carry.
        const F_SETSIG: c_int = 10;
        const F_GETSIG: c_int = 11;
        const F_SETOWN_EX: c_int = 15;
        const F_GETOWN_EX: c_int = 16;
        #[repr(C)]
        struct OwnerEx {
            kind: c_int,
            pid: libc::pid_t,
        }
        let mut owner = OwnerEx { kind: 0, pid: 0 };
        // SAFETY: F_GETOWN_EX/F_SETOWN_EX take a pointer to struct f_owner_ex, which OwnerEx mirrors.
        if unsafe { libc::fcntl(from, F_GETOWN_EX, &raw mut owner) } == 0 && owner.pid != 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(to, F_SETOWN_EX, &raw const owner) };
        }
        if let Some(sig) = sys::fcntl_get(from, F_GETSIG).ok().filter(|s| *s != 0) {
            let _ = sys::fcntl_set(to, F_SETSIG, sig);
        }
    }
    #[cfg(not(target_os = "linux"))]
    if let Some(owner) = sys::fcntl_get(from, libc::F_GETOWN).ok().filter(|o| *o != 0) {
        let _ = sys::fcntl_set(to, libc::F_SETOWN, owner);
    }
}

/// Copies SOL_SOCKET options whose values differ on the new socket. Buffer
/// sizes the app never set (the defaults of `from_domain`) are not copied: a
/// TCP socket's reads 16 KiB but grows by itself, and pinning a Unix socket
/// to it would make writes block far sooner than on TCP; the TCP value is
/// kept in `store` to be read back instead.
fn replay_socket_options(from: c_int, from_domain: c_int, to: c_int, store: &mut Options) {
    let fresh = sys::socket(from_domain, libc::SOCK_STREAM).ok();
    for &name in options::REPLAYED {
        let (Ok(want), Ok(have)) =
            (sys::getsockopt_int(from, libc::SOL_SOCKET, name), sys::getsockopt_int(to, libc::SOL_SOCKET, name))
        else {
            continue;
        };
        if want == have {
            continue;
        }
        let buffer = name == libc::SO_RCVBUF || name == libc::SO_SNDBUF;
        let default = fresh.as_ref().and_then(|f| sys::getsockopt_int(f.raw(), libc::SOL_SOCKET, name).ok());
        if buffer && default == Some(want) {
            if from_domain != libc::AF_UNIX {
                store.set(libc::SOL_SOCKET, name, &want.to_ne_bytes());
            }
            continue;
        }
        // Linux doubles buffer sizes on set and reports the doubled value.
        let doubled = cfg!(target_os = "linux") && buffer;
        let value = if doubled { want / 2 } else { want };
        let _ = sys::setsockopt_int(to, libc::SOL_SOCKET, name, value);
    }
    let mut linger = [0u8; std::mem::size_of::<libc::linger>()];
    if let Ok(n) = sys::getsockopt_bytes(from, libc::SOL_SOCKET, libc::SO_LINGER, &mut linger) {
        if linger[..n].iter().any(|b| *b != 0) {
            let _ = sys::setsockopt_bytes(to, libc::SOL_SOCKET, libc::SO_LINGER, &linger[..n]);
        }
    }
}

/// Reads options a Unix socket cannot hold into the store.
fn carry_options(from: c_int, v6: bool, rep: &mut Replacement) {
    for &(level, name) in options::carried(v6) {
        if let Ok(v) = sys::getsockopt_int(from, level, name) {
            rep.options.set(level, name, &v.to_ne_bytes());
            if (level, name) == (libc::SOL_SOCKET, libc::SO_REUSEPORT) {
                rep.reuseport = v != 0;
            }
            if (level, name) == (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) {
                rep.v6only = v != 0;
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod epoll {
    //! Epoll registrations of a descriptor, read from /proc/self/fdinfo of
    //! every epoll instance (registrations made through raw system calls
    //! are found too).
    use libc::c_int;

    pub struct Registration {
        epfd: c_int,
        events: u32,
        data: u64,
    }

    pub fn registrations(fd: c_int) -> Vec<Registration> {
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return found };
        for entry in dir.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else { continue };
            if link.as_os_str() != "anon_inode:[eventpoll]" {
                continue;
            }
            let Some(epfd) = entry.file_name().to_str().and_then(|s| s.parse::<c_int>().ok()) else { continue };
            let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")) else { continue };
            found.extend(parse(&info, fd).map(|(events, data)| Registration { epfd, events, data }));
        }
        found
    }

    /// `tfd: <fd> events: <hex> data: <hex> ...` lines naming `fd`.
    pub fn parse(info: &str, fd: c_int) -> impl Iterator<Item = (u32, u64)> + '_ {
        info.lines().filter_map(move |line| {
            let mut words = line.split_whitespace();
            if words.next()? != "tfd:" || words.next()?.parse::<c_int>().ok()? != fd {
                return None;
            }
            if words.next()? != "events:" {
                return None;
            }
            let events = u32::from_str_radix(words.next()?, 16).ok()?;
            if words.next()? != "data:" {
                return None;
            }
            let data = u64::from_str_radix(words.next()?, 16).ok()?;
            Some((events, data))
        })
    }

    pub fn restore(fd: c_int, regs: &[Registration]) {
        for r in regs {
            let mut ev = libc::epoll_event { events: r.events, u64: r.data };
            // SAFETY: `ev` is a valid epoll_event; a failure leaves nothing behind.
            unsafe { libc::epoll_ctl(r.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        }
    }

    pub fn remove(fd: c_int, regs: &[Registration]) {
        for r in regs {
            // SAFETY: EPOLL_CTL_DEL ignores the event pointer; a failure leaves nothing behind.
            unsafe { libc::epoll_ctl(r.epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn parses_fdinfo() {
            let info = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n\
                tfd:        5 events:       19 data:                5  pos:0 ino:2c1b sdev:8\n\
                tfd:       12 events: 80000001 data: 00007f00deadbeef  pos:0 ino:2c1c sdev:8\n";
            assert_eq!(super::parse(info, 5).collect::<Vec<_>>(), [(0x19, 5)]);
            assert_eq!(super::parse(info, 12).collect::<Vec<_>>(), [(0x8000_0001, 0x7f00_dead_beef)]);
            assert_eq!(super::parse(info, 7).count(), 0);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod epoll {
    //! kqueue registrations are not carried over (no way to list them);
    //! event loops register after listen().
    pub struct Registration;
    pub fn registrations(_fd: libc::c_int) -> Vec<Registration> {
        Vec::new()
    }
    pub fn restore(_fd: libc::c_int, _regs: &[Registration]) {}
    pub fn remove(_fd: libc::c_int, _regs: &[Registration]) {}
}
