//! `AGENTFS_DEBUG`: one line per decision (converted, redirected, passed
//! through and why) with pid and fd, to `logs/shim.<pid>.log` or stderr.
//! Lines are formatted on the stack and written with one write(2); the file
//! is opened per line, so a descriptor the app closes or reuses is never
//! written to. errno is left as it was.

use std::fmt::{self, Write as _};

use libc::c_int;

use crate::config::{self, Debug};

const LINE: usize = 768;

struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Whether decisions are logged at all (cheap: check before formatting).
pub fn enabled() -> bool {
    config::get().is_some_and(|c| c.debug != Debug::Off)
}

/// Logs one decision about `fd`.
pub fn write_decision(fd: c_int, args: fmt::Arguments<'_>) {
    let Some(cfg) = config::get() else { return };
    if cfg.debug == Debug::Off {
        return;
    }
    crate::errno::preserve(|| {
        let mut line = Line { buf: [0; LINE], len: 0 };
        let _ = write!(line, "agentfs-shim[{}] fd={fd} ", std::process::id());
        let _ = line.write_fmt(args);
        line.buf[line.len] = b'\n';
        let bytes = &line.buf[..=line.len];
        match cfg.debug {
            Debug::Stderr => write_all(2, bytes),
            Debug::File => append_to_file(cfg, bytes),
            Debug::Off => {}
        }
    });
}

fn append_to_file(cfg: &config::Config, bytes: &[u8]) {
    let Some(home) = &cfg.home else { return };
    let path = home.shim_log(std::process::id());
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return };
    // Never blocks on a FIFO or follows a symlink planted at the log's name.
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // SAFETY: a NUL-terminated path; the mode argument is what O_CREAT needs.
    let mut fd = unsafe { libc::open(cpath.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 && agentfs_registry::home::ensure_private_dir(&home.logs_dir()).is_ok() {
        // SAFETY: as above.
        fd = unsafe { libc::open(cpath.as_ptr(), flags, 0o600 as libc::c_uint) };
    }
    if fd < 0 {
        return;
    }
    write_all(fd, bytes);
    // SAFETY: `fd` is the descriptor opened above.
    unsafe { libc::close(fd) };
}

fn write_all(fd: c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && crate::errno::get() == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Logs a decision when debugging is on; arguments are formatted lazily.
macro_rules! decision {
    ($fd:expr, $($arg:tt)*) => {
        if $crate::log::enabled() {
            $crate::log::write_decision($fd, format_args!($($arg)*));
        }
    };
}
pub(crate) use decision;

/// Prints a line to stderr regardless of AGENTFS_DEBUG (configuration errors).
pub fn warn(msg: &str) {
    let mut line = Line { buf: [0; LINE], len: 0 };
    let _ = write!(line, "agentfs-shim[{}]: {msg}", std::process::id());
    line.buf[line.len] = b'\n';
    write_all(2, &line.buf[..=line.len]);
}
