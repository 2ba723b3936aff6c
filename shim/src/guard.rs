//! The boundary between C callers and the shim's Rust code: a thread-local
//! re-entrancy guard (the shim's own libc calls, and signal handlers that
//! interrupt a hook, go straight to libc) and a panic catcher (a bug in the
//! shim falls back to the original call instead of unwinding into C).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use libc::c_int;

thread_local! {
    // const-initialised and without a destructor: no allocation, no TLS
    // destructor registration, usable from any thread at any time.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// What a hook's implementation decided (`R`: the C function's return type).
#[derive(Debug)]
pub enum Outcome<R = c_int> {
    /// The call is answered with this value; errno is already set.
    Done(R),
    /// The call goes to libc unchanged.
    Pass(Pass),
}

/// Why a call goes to libc unchanged. Only decisions about binds and
/// connects are logged; the rest are the common, uninteresting case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// `AGENTFS_APP` is unset or invalid: the shim converts nothing.
    NoApp,
    /// The descriptor or address is not one the shim converted or tracks.
    NotOurs,
    /// Not an `AF_INET`/`AF_INET6` address.
    NotInet,
    /// Not a `SOCK_STREAM` socket.
    NotStream,
    /// Port 0: the app wants any port, which needs no conversion.
    PortZero,
    /// A specific address that is not loopback.
    NotLoopback,
    /// Excluded by `AGENTFS_PORTS` / `AGENTFS_SKIP_PORTS`.
    Skipped,
    /// No listener of this instance serves that port.
    NoListener,
    /// The conversion failed; the original call is made instead (fail open).
    Failed,
}

impl Pass {
    pub fn describe(self) -> &'static str {
        match self {
            Pass::NoApp => "AGENTFS_APP not set",
            Pass::NotOurs => "not a converted socket",
            Pass::NotInet => "not an IPv4/IPv6 address",
            Pass::NotStream => "not a SOCK_STREAM socket",
            Pass::PortZero => "port 0",
            Pass::NotLoopback => "specific non-loopback address",
            Pass::Skipped => "excluded by AGENTFS_PORTS/AGENTFS_SKIP_PORTS",
            Pass::NoListener => "no listener of this instance on that port",
            Pass::Failed => "conversion failed, original call made",
        }
    }
}

/// A C return type whose failure value is -1.
pub trait CRet: Copy {
    const FAILED: Self;
}

impl CRet for c_int {
    const FAILED: c_int = -1;
}

impl CRet for libc::ssize_t {
    const FAILED: libc::ssize_t = -1;
}

/// Runs a hook: `imp` decides unless this thread is already inside the shim
/// or `imp` panics, in which case (and on `Pass`) `pass` makes the original
/// call. A missing original (symbol absent from this libc) is ENOSYS.
pub fn hook<F: Copy, R: CRet>(real: Option<F>, imp: impl FnOnce(F) -> Outcome<R>, pass: impl FnOnce(F) -> R) -> R {
    let Some(real) = real else {
        crate::errno::set(libc::ENOSYS);
        return R::FAILED;
    };
    match enter(|| imp(real)) {
        Some(Outcome::Done(ret)) => ret,
        Some(Outcome::Pass(_)) | None => pass(real),
    }
}

/// Runs `f` unless this thread is already inside the shim. `None` when it is,
/// when thread-local storage is gone (thread teardown), or when `f` panicked.
pub fn enter<R>(f: impl FnOnce() -> R) -> Option<R> {
    let entered = BUSY.try_with(|busy| !busy.replace(true)).unwrap_or(false);
    if !entered {
        return None;
    }
    let result = catch_unwind(AssertUnwindSafe(f));
    let _ = BUSY.try_with(|busy| busy.set(false));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentry_passes_through() {
        let inner = enter(|| enter(|| 1));
        assert_eq!(inner, Some(None));
        assert_eq!(enter(|| 2), Some(2), "the guard is released");
    }

    #[test]
    fn panics_are_caught() {
        std::panic::set_hook(Box::new(|_| {}));
        assert_eq!(enter(|| -> i32 { panic!("bug") }), None);
        let _ = std::panic::take_hook();
        assert_eq!(enter(|| 3), Some(3), "the guard is released after a panic");
    }

    #[test]
    fn missing_original_is_enosys() {
        let real: Option<fn() -> c_int> = None;
        assert_eq!(hook(real, |_| Outcome::Done(0), |f| f()), -1);
        assert_eq!(crate::errno::get(), libc::ENOSYS);
        let real: Option<fn() -> c_int> = Some(|| 7);
        assert_eq!(hook(real, |_| Outcome::Pass(Pass::NotOurs), |f| f()), 7);
        assert_eq!(hook(real, |_| Outcome::Done(5), |f| f()), 5);
    }
}
