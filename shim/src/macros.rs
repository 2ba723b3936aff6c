//! One declaration per hook, two platforms. `hooks!` emits, for each hook:
//! - a module named after it with `Fn` (its C signature, type-checked against
//!   libc's declaration) and `original()`;
//! - on Linux, the exported symbol (`original()` = the next definition,
//!   found once with `dlsym(RTLD_NEXT)`);
//! - on macOS, a `__DATA,__interpose` entry (`original()` = the libc symbol
//!   itself: dyld does not interpose calls made from the interposing image,
//!   while `dlsym` results are interposed and could return the hook).
//!
//! Unit-test builds keep the hook functions but do not export them (a test
//! binary must not take over its own libc calls).
//!
//! Every hook body is the same two lines: the implementation decides, or the
//! original is called with the caller's arguments (see `guard::hook`).

use std::ffi::{CStr, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

/// A lazily resolved `dlsym(RTLD_NEXT, name)`.
pub struct Original {
    name: &'static CStr,
    ptr: AtomicPtr<c_void>,
}

impl Original {
    pub const fn new(name: &'static CStr) -> Original {
        Original { name, ptr: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// The next definition of the symbol, `None` if there is none.
    pub fn get(&self) -> Option<*mut c_void> {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return Some(p);
        }
        // SAFETY: RTLD_NEXT with a NUL-terminated name is dlsym's documented use;
        // it returns null or the address of the next definition.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        if p.is_null() {
            return None;
        }
        self.ptr.store(p, Ordering::Release);
        Some(p)
    }
}

/// An entry of `__DATA,__interpose`: dyld replaces `replacee` with
/// `replacement` in every image but the one holding the entry.
#[repr(C)]
pub struct Interpose {
    pub replacement: *const (),
    pub replacee: *const (),
}

// SAFETY: the entries are immutable data read by dyld; Rust code never uses them.
unsafe impl Sync for Interpose {}

/// Declares hooks. Syntax, one per hook:
/// `fn name(arg: Ty, ...) [-> Ret] => implementation, like libc::name [, symbol "name$NOCANCEL"];`
/// The implementation is `unsafe fn(real: Fn, args...) -> guard::Outcome<Ret>`;
/// `Ret` is `c_int` unless given.
/// `like` names the libc function whose signature the hook must match;
/// `symbol` hooks a symbol whose name is not a Rust identifier (macOS only).
macro_rules! hooks {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:path, like $check:path $(, symbol $sym:literal)?;
    )*) => {
        $(
            $(#[$meta])*
            #[allow(non_snake_case, dead_code)]
            pub mod $name {
                #[allow(unused_imports)]
                use super::*;

                /// The C return type of the hooked function.
                pub type Ret = $crate::macros::ret_or_int!($($ret)?);
                /// The C signature of the hooked function.
                pub type Fn = unsafe extern "C" fn($($ty),*) -> Ret;
                // The hook must have exactly libc's signature.
                const _: Fn = $check;

                $crate::macros::hook_original!($name, $check $(, $sym)?; $($arg: $ty),*);

                /// Resolves `original()` ahead of time (in the constructor).
                pub fn resolve() {
                    let _ = original();
                }

                /// The exported hook.
                ///
                /// # Safety
                /// The caller meets the C contract of the function it replaces.
                #[cfg(not(target_vendor = "apple"))]
                #[cfg_attr(not(test), unsafe(no_mangle))]
                pub unsafe extern "C" fn $name($($arg: $ty),*) -> Ret {
                    $crate::guard::hook(
                        original(),
                        // SAFETY: the caller's arguments meet the contract of the C function,
                        // which is all the implementation assumes of them.
                        |real| unsafe { $imp(real, $($arg),*) },
                        // SAFETY: the caller's own arguments, forwarded unchanged.
                        |real| unsafe { real($($arg),*) },
                    )
                }

                #[cfg(target_vendor = "apple")]
                unsafe extern "C" fn hook($($arg: $ty),*) -> Ret {
                    $crate::guard::hook(
                        original(),
                        // SAFETY: as above, the caller's arguments meet the C contract.
                        |real| unsafe { $imp(real, $($arg),*) },
                        // SAFETY: the caller's own arguments, forwarded unchanged.
                        |real| unsafe { real($($arg),*) },
                    )
                }

                #[cfg(target_vendor = "apple")]
                #[used]
                #[unsafe(link_section = "__DATA,__interpose")]
                static INTERPOSE: $crate::macros::Interpose = $crate::macros::Interpose {
                    replacement: hook as *const (),
                    replacee: replacee() as *const (),
                };
            }
        )*

        /// Resolves the originals of every hook declared here.
        pub fn resolve_all() {
            $( $(#[$meta])* { $name::resolve(); } )*
        }
    };
}
pub(crate) use hooks;

/// The return type given to `hooks!`, `c_int` when none is.
macro_rules! ret_or_int {
    () => {
        ::libc::c_int
    };
    ($ret:ty) => {
        $ret
    };
}
pub(crate) use ret_or_int;

/// `original()` (and, on macOS, `replacee()`) of one hook.
macro_rules! hook_original {
    ($name:ident, $check:path; $($arg:ident: $ty:ty),*) => {
        #[cfg(not(target_vendor = "apple"))]
        static ORIGINAL: $crate::macros::Original = $crate::macros::Original::new(
            match ::std::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("hook names have no interior NUL"),
            },
        );

        /// The next definition of the symbol (libc's), found once.
        #[cfg(not(target_vendor = "apple"))]
        pub fn original() -> Option<Fn> {
            let p = ORIGINAL.get()?;
            // SAFETY: `p` is the address of the symbol this module is named after,
            // whose C type is `Fn` (type-checked against libc above).
            Some(unsafe { ::std::mem::transmute::<*mut ::std::ffi::c_void, Fn>(p) })
        }

        /// libc's own symbol: calls from this image are not interposed.
        #[cfg(target_vendor = "apple")]
        pub fn original() -> Option<Fn> {
            Some(replacee())
        }

        #[cfg(target_vendor = "apple")]
        const fn replacee() -> Fn {
            $check
        }
    };
    ($name:ident, $check:path, $sym:literal; $($arg:ident: $ty:ty),*) => {
        unsafe extern "C" {
            #[link_name = $sym]
            fn symbol($($arg: $ty),*) -> Ret;
        }

        /// The symbol named `$sym` in libc.
        pub fn original() -> Option<Fn> {
            Some(replacee())
        }

        const fn replacee() -> Fn {
            symbol
        }
    };
}
pub(crate) use hook_original;
