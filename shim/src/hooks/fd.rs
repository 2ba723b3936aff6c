//! Hooks that create or destroy descriptor numbers without creating
//! sockets: close (and glibc's `__close`, macOS's `close$NOCANCEL`),
//! close_range, dup, dup2, dup3. They keep the shim's books exact, so a
//! socket file is removed when the binding process's last descriptor for it
//! goes, and a dup behaves like the original. fcntl(F_DUPFD*) is in `fcntl`.

use libc::c_int;

use crate::fdtable;
use crate::guard::Outcome;
use crate::hooks::socket::forget;
use crate::listeners;
use crate::macros::hooks;

hooks! {
    #[cfg(not(target_vendor = "apple"))]
    fn close(fd: c_int) => on_close, like libc::close;
    // The libc crate binds `close` to `close$NOCANCEL` on x86_64 macOS: name
    // the plain symbol, so both are interposed on both architectures.
    #[cfg(target_vendor = "apple")]
    fn close(fd: c_int) => on_close, like libc::close, symbol "close";
    #[cfg(target_os = "linux")]
    fn __close(fd: c_int) => on_close, like libc::close;
    #[cfg(target_vendor = "apple")]
    fn close_nocancel(fd: c_int) => on_close, like libc::close, symbol "close$NOCANCEL";
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn close_range(first: libc::c_uint, last: libc::c_uint, flags: c_int) => on_close_range, like libc::close_range;
    fn dup(fd: c_int) => on_dup, like libc::dup;
    fn dup2(fd: c_int, to: c_int) => on_dup2, like libc::dup2;
    #[cfg(target_os = "linux")]
    fn dup3(fd: c_int, to: c_int, flags: c_int) => on_dup3, like libc::dup3;
}

unsafe fn on_close(real: close::Fn, fd: c_int) -> Outcome {
    let gone = fdtable::take(fd);
    // SAFETY: integer argument only.
    let r = unsafe { real(fd) };
    listeners::release_state(gone);
    Outcome::Done(r)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe fn on_close_range(real: close_range::Fn, first: libc::c_uint, last: libc::c_uint, flags: c_int) -> Outcome {
    // SAFETY: integer arguments only.
    let r = unsafe { real(first, last, flags) };
    if r == 0 && flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        let clamp = |v: libc::c_uint| c_int::try_from(v).unwrap_or(c_int::MAX);
        crate::errno::preserve(|| fdtable::tracked_in(clamp(first), clamp(last), |fd, _| forget(fd)));
    }
    Outcome::Done(r)
}

/// `new` now refers to what `old` refers to.
pub fn duplicated(old: c_int, new: c_int) {
    forget(new);
    if let Some(st) = fdtable::get(old) {
        if st.listener != 0 {
            listeners::add_ref(st.listener);
        }
        listeners::release_state(fdtable::set(new, st));
    }
}

unsafe fn on_dup(real: dup::Fn, fd: c_int) -> Outcome {
    // SAFETY: integer arguments only.
    let new = unsafe { real(fd) };
    if new >= 0 {
        duplicated(fd, new);
    }
    Outcome::Done(new)
}

unsafe fn on_dup2(real: dup2::Fn, fd: c_int, to: c_int) -> Outcome {
    // SAFETY: integer arguments only.
    let r = unsafe { real(fd, to) };
    if r >= 0 && fd != to {
        duplicated(fd, to);
    }
    Outcome::Done(r)
}

#[cfg(target_os = "linux")]
unsafe fn on_dup3(real: dup3::Fn, fd: c_int, to: c_int, flags: c_int) -> Outcome {
    // SAFETY: integer arguments only.
    let r = unsafe { real(fd, to, flags) };
    if r >= 0 {
        duplicated(fd, to);
    }
    Outcome::Done(r)
}
