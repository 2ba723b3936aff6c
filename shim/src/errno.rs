//! `errno` of the calling thread: hooks must leave exactly the value the
//! kernel (or the faked call) would, so apps that branch on it keep working.

use libc::c_int;

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn location() -> *mut c_int {
    // SAFETY: __error() has no preconditions and returns this thread's errno slot.
    unsafe { libc::__error() }
}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
fn location() -> *mut c_int {
    // SAFETY: __errno_location() has no preconditions and returns this thread's errno slot.
    unsafe { libc::__errno_location() }
}

pub fn get() -> c_int {
    // SAFETY: the slot is valid for the life of the thread.
    unsafe { *location() }
}

pub fn set(value: c_int) {
    // SAFETY: the slot is valid for the life of the thread.
    unsafe { *location() = value }
}

/// Fails a hooked call the way libc does: errno set, -1 returned.
pub fn fail(value: c_int) -> c_int {
    set(value);
    -1
}

/// Runs `f` and restores errno afterwards (for logging and cleanup that must
/// not disturb what the app will read).
pub fn preserve<R>(f: impl FnOnce() -> R) -> R {
    let saved = get();
    let r = f();
    set(saved);
    r
}
