//! fcntl(F_DUPFD, F_DUPFD_CLOEXEC) duplicates descriptors (Python's os.dup
//! uses it). fcntl is variadic, so the exported hook is C (`src/c/fcntl.c`)
//! and forwards its one optional argument here; every other command passes
//! straight through.

use std::ffi::c_void;

use libc::c_int;

use crate::guard::{self, Outcome, Pass};
use crate::hooks::fd::duplicated;

/// fcntl's C signature.
pub type Fn = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;
// The hook must call something of exactly libc's signature.
const _: Fn = libc::fcntl;

#[cfg(not(target_vendor = "apple"))]
static ORIGINALS: [crate::macros::Original; 2] =
    [crate::macros::Original::new(c"fcntl"), crate::macros::Original::new(c"fcntl64")];

/// The original of hook `which` (0 = fcntl, 1 = fcntl64).
#[cfg(not(target_vendor = "apple"))]
pub fn original(which: c_int) -> Option<Fn> {
    let p = ORIGINALS.get(usize::try_from(which).ok()?)?.get()?;
    // SAFETY: `p` is libc's fcntl or fcntl64, both of type `Fn`.
    Some(unsafe { std::mem::transmute::<*mut c_void, Fn>(p) })
}

/// libc's own fcntl: calls from this image are not interposed.
#[cfg(target_vendor = "apple")]
pub fn original(_which: c_int) -> Option<Fn> {
    Some(libc::fcntl)
}

pub fn resolve_all() {
    let _ = original(0);
    let _ = original(1);
}

/// Called by the C hooks with the optional argument read as a pointer.
///
/// # Safety
/// `fd`, `cmd` and `arg` are the caller's fcntl arguments.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn agentfs_fcntl(fd: c_int, cmd: c_int, arg: *mut c_void, which: c_int) -> c_int {
    guard::hook(
        original(which),
        // SAFETY: the caller's own fcntl arguments.
        |real| unsafe { on_fcntl(real, fd, cmd, arg) },
        // SAFETY: the caller's own fcntl arguments, forwarded unchanged.
        |real| unsafe { real(fd, cmd, arg) },
    )
}

unsafe fn on_fcntl(real: Fn, fd: c_int, cmd: c_int, arg: *mut c_void) -> Outcome {
    if cmd != libc::F_DUPFD && cmd != libc::F_DUPFD_CLOEXEC {
        return Outcome::Pass(Pass::NotOurs);
    }
    // SAFETY: the caller's own arguments; F_DUPFD* read an int from the variadic slot.
    let new = unsafe { real(fd, cmd, arg) };
    if new >= 0 {
        duplicated(fd, new);
    }
    Outcome::Done(new)
}

#[cfg(all(target_vendor = "apple", not(test)))]
mod interpose {
    unsafe extern "C" {
        /// The C hook (src/c/fcntl.c).
        fn agentfs_fcntl_hook(fd: libc::c_int, cmd: libc::c_int, ...) -> libc::c_int;
    }

    #[used]
    #[unsafe(link_section = "__DATA,__interpose")]
    static INTERPOSE: crate::macros::Interpose =
        crate::macros::Interpose { replacement: agentfs_fcntl_hook as *const (), replacee: libc::fcntl as *const () };
}
