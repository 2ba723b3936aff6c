//! Keeping the shim alive across exec and posix_spawn. The exec hooks ask
//! [`plan`] whether a launch needs rewriting; the decision itself is the
//! registry's pure resolver (`agentfs_registry::launch`), fed with a probe of
//! the real file system. The common case — a preload variable that still
//! names the shim and a target that is not protected — is decided without
//! allocating on Linux (exec may run in a vfork child), from a stack buffer.
//! On Linux a launch is also planned when `wrap` set a port aside for a
//! program the shim cannot enter (`AGENTFS_STATIC_PORT`) and the target is
//! one (statically linked or Go, from its headers read with bounded reads
//! into stack buffers), so the resolver gives it `PORT`.
//! On macOS the target's code signature is read too (a hardened program
//! that would be killed by the shim must not get it); macOS has no vfork
//! children here: spawns use posix_spawn, and malloc is fork-safe there.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;

use libc::c_char;

use agentfs_registry::binary::{self, Binary, HEAD_LEN};
use agentfs_registry::env::STATIC_PORT;
use agentfs_registry::launch::{self, Launch, Rules, SHIM_VAR};
use agentfs_registry::launch_probe::{self, RealProbe, is_protected_path};

use crate::config;
use crate::log::decision;

/// A launch rewritten: owned strings and the NULL-terminated arrays over them.
pub struct Planned {
    pub path: CString,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    env_ptrs: Vec<*const c_char>,
}

impl Planned {
    pub fn argv(&self) -> *const *const c_char {
        self.argv_ptrs.as_ptr()
    }
    pub fn env(&self) -> *const *const c_char {
        self.env_ptrs.as_ptr()
    }
}

/// The process's own environment (what execv and execvp pass on).
pub fn environ() -> *const *const c_char {
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: _NSGetEnviron has no preconditions and returns a valid pointer to `environ`.
        unsafe { (*libc::_NSGetEnviron()).cast_const().cast() }
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        unsafe extern "C" {
            static environ: *const *const c_char;
        }
        // SAFETY: reading the C runtime's environ pointer.
        unsafe { environ }
    }
}

/// How to launch `file` instead, or `None` to launch it as asked.
///
/// # Safety
/// `file` is a C string and `argv`/`envp` NULL-terminated arrays of C strings
/// (or null), as exec and posix_spawn require.
pub unsafe fn plan(
    file: *const c_char,
    search: bool,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Option<Planned> {
    // SAFETY: caller contract.
    let (file, env) = unsafe { (CStr::from_ptr(file).to_bytes(), Entries(envp)) };
    let rules = Rules::host();
    if !needs_plan(file, search, &env, &rules) {
        return None;
    }
    // Planning allocates; a vfork child shares the parent's heap with the
    // parent's other threads, so it launches as asked.
    if !crate::process::is_owner() {
        return None;
    }
    // SAFETY: caller contract.
    let launch = unsafe { to_launch(file, search, argv, envp) }?;
    let probe = RealProbe { simulate_sip: config::get().and_then(|c| c.simulate_sip.clone()) };
    let planned = launch::resolve(&launch, &rules, &probe);
    for note in &planned.notes {
        decision!(-1, "exec {}: {note}", launch.file);
    }
    if !planned.changed {
        return None;
    }
    build(&planned.path, &planned.argv, &planned.env)
}

/// The allocation-free test: true only when the shim could be lost.
fn needs_plan(file: &[u8], search: bool, env: &Entries, rules: &Rules) -> bool {
    let Some(shim) = env.get(SHIM_VAR.as_bytes()).filter(|s| !s.is_empty()) else { return false };
    let preload = env.get(rules.preload_var.as_bytes()).unwrap_or(b"");
    if !preload.split(|b| *b == b':').any(|e| e == shim) {
        return true;
    }
    if !cfg!(target_vendor = "apple") && simulated_sip().is_none() {
        return wants_static_port(env) && target_refuses_shim(file, search);
    }
    if search && !file.contains(&b'/') {
        return true;
    }
    let mut buf = [0u8; HEAD_LEN];
    let head = read_head(file, &mut buf);
    if is_protected(file) || classify_path(file).refuses_shim() {
        return true;
    }
    if cfg!(target_vendor = "apple") && std::str::from_utf8(file).is_ok_and(launch_probe::refuses_shim) {
        return true;
    }
    let interp = head.strip_prefix(b"#!").map(|l| {
        let l = &l[..l.iter().position(|b| *b == b'\n').unwrap_or(l.len())];
        let l = l.trim_ascii_start();
        &l[..l.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(l.len())]
    });
    interp.is_some_and(is_protected)
}

/// `wrap` set a port aside for a program the shim cannot enter, and `PORT`
/// is not that port yet.
fn wants_static_port(env: &Entries) -> bool {
    let port = env.get(STATIC_PORT.as_bytes()).filter(|p| !p.is_empty());
    port.is_some_and(|p| env.get(b"PORT") != Some(p))
}

/// Whether the program `file` names (searched in PATH as execvp does when
/// `search`) cannot load the shim. Allocation-free.
fn target_refuses_shim(file: &[u8], search: bool) -> bool {
    if !search || file.contains(&b'/') {
        return classify_path(file).refuses_shim();
    }
    let own = Entries(environ());
    let path = own.get(b"PATH").unwrap_or(b"/usr/bin:/bin");
    let mut buf = [0u8; 1024];
    for dir in path.split(|b| *b == b':').map(|d| if d.is_empty() { &b"."[..] } else { d }) {
        let n = dir.len() + 1 + file.len();
        if n >= buf.len() {
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..n].copy_from_slice(file);
        buf[n] = 0;
        // SAFETY: `buf` is NUL-terminated at `n`.
        if unsafe { libc::access(buf.as_ptr().cast(), libc::X_OK) } == 0 {
            return classify_path(&buf[..n]).refuses_shim();
        }
    }
    false
}

/// The NULL-terminated `KEY=value` array of an environment.
struct Entries(*const *const c_char);

impl Entries {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let mut p = self.0;
        if p.is_null() {
            return None;
        }
        loop {
            // SAFETY: a NULL-terminated array of C strings (caller contract of `plan`).
            let entry = unsafe { *p };
            if entry.is_null() {
                return None;
            }
            // SAFETY: as above.
            let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
            if let Some(v) = bytes.strip_prefix(key).and_then(|r| r.strip_prefix(b"=")) {
                return Some(v);
            }
            // SAFETY: the array continues up to its NULL.
            p = unsafe { p.add(1) };
        }
    }
}

/// # Safety
/// As for [`plan`].
unsafe fn to_launch(
    file: &[u8],
    search: bool,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Option<Launch> {
    let strings = |mut p: *const *const c_char| -> Option<Vec<String>> {
        let mut v = Vec::new();
        while !p.is_null() {
            // SAFETY: NULL-terminated array of C strings (caller contract).
            let entry = unsafe { *p };
            if entry.is_null() {
                break;
            }
            // SAFETY: as above.
            v.push(std::str::from_utf8(unsafe { CStr::from_ptr(entry) }.to_bytes()).ok()?.to_owned());
            // SAFETY: the array continues up to its NULL.
            p = unsafe { p.add(1) };
        }
        Some(v)
    };
    Some(Launch {
        file: std::str::from_utf8(file).ok()?.to_owned(),
        search,
        path_var: std::env::var("PATH").ok(),
        argv: strings(argv)?,
        env: strings(envp)?,
    })
}

fn build(path: &str, argv: &[String], env: &[String]) -> Option<Planned> {
    let owned = |v: &[String]| v.iter().map(|s| CString::new(s.as_bytes()).ok()).collect::<Option<Vec<_>>>();
    let (argv, env) = (owned(argv)?, owned(env)?);
    let ptrs = |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    Some(Planned {
        path: CString::new(path).ok()?,
        argv_ptrs: ptrs(&argv),
        env_ptrs: ptrs(&env),
        _argv: argv,
        _env: env,
    })
}

/// `AGENTFS_SIMULATE_SIP`: programs under this directory count as protected.
fn simulated_sip() -> Option<&'static [u8]> {
    config::get()?.simulate_sip.as_deref().map(|p| p.as_os_str().as_bytes())
}

fn is_protected(path: &[u8]) -> bool {
    is_protected_path(path, simulated_sip())
}

/// Reads up to `buf.len()` bytes of a file without allocating.
fn read_head<'b>(path: &[u8], buf: &'b mut [u8; HEAD_LEN]) -> &'b [u8] {
    let n = with_file(path, |fd| pread(fd, 0, buf)).unwrap_or(0);
    &buf[..n]
}

/// Classifies a file from its headers (bounded reads, no allocation).
fn classify_path(path: &[u8]) -> Binary {
    let classify = |fd| {
        let mut head = [0u8; HEAD_LEN];
        let n = pread(fd, 0, &mut head);
        binary::classify_file(&head[..n], |off, buf| pread(fd, off, buf))
    };
    with_file(path, classify).unwrap_or(Binary::Other)
}

/// Runs `f` on a read-only descriptor of `path`, closed afterwards.
fn with_file<T>(path: &[u8], f: impl FnOnce(libc::c_int) -> T) -> Option<T> {
    let mut cpath = [0u8; 1024];
    if path.len() >= cpath.len() {
        return None;
    }
    cpath[..path.len()].copy_from_slice(path);
    // SAFETY: `cpath` is NUL-terminated.
    let fd = unsafe { libc::open(cpath.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    let out = f(fd);
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    Some(out)
}

/// `pread` into `buf`: the bytes read, 0 on error.
fn pread(fd: libc::c_int, off: u64, buf: &mut [u8]) -> usize {
    let Ok(off) = libc::off_t::try_from(off) else { return 0 };
    // SAFETY: `buf` is writable for its length; `fd` is open.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off) };
    usize::try_from(n).unwrap_or(0)
}
