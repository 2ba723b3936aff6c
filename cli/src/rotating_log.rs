//! A log file moved to `<name>.1` (replacing the one before) once it passes
//! a size, while its writer runs: `logs/router.log` for a router started in
//! the background, and `logs/<app>.<instance>.log` for a background
//! instance (see `applog`). A router up for weeks, or an app logging a
//! storm, never fills the disk. The file is opened with `O_NOFOLLOW`: a
//! symlink put in its place is refused, not followed. (The router's stderr,
//! where only a crash would write, still points at the file it was started
//! with.)

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};

/// A log file rotated by size; a `MakeWriter` for `tracing_subscriber`.
#[derive(Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
}

/// Where a rotated log goes: `router.log` → `router.log.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".1");
    path.with_file_name(name)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(no_follow_no_block()).open(path)
}

fn no_follow_no_block() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

impl RotatingLog {
    pub fn open(path: PathBuf, limit: u64) -> Result<RotatingLog> {
        let file = open_append(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let written = file.metadata().map_or(0, |m| m.len());
        Ok(RotatingLog { inner: Arc::new(Mutex::new(Inner { path, file, written, limit })) })
    }

    /// Writes `buf` with one `write` (rotating first if the file is full).
    pub fn append(&self, buf: &[u8]) -> io::Result<()> {
        Guard(self.lock()).write_all(buf)
    }

    /// Writes to the log at `path` from now on (same limit).
    pub fn reopen_at(&self, path: PathBuf) -> Result<()> {
        let file = open_append(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut inner = self.lock();
        inner.written = file.metadata().map_or(0, |m| m.len());
        (inner.path, inner.file) = (path, file);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn rotate(&mut self) {
        let _ = std::fs::rename(&self.path, rotated(&self.path));
        if let Ok(f) = open_append(&self.path) {
            self.file = f;
        }
        self.written = 0;
    }
}

/// One log event's write, holding the file.
pub struct Guard<'a>(MutexGuard<'a, Inner>);

impl Write for Guard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let inner = &mut *self.0;
        if inner.written >= inner.limit {
            inner.rotate();
        }
        let n = inner.file.write(buf)?;
        inner.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingLog {
    type Writer = Guard<'a>;

    fn make_writer(&'a self) -> Guard<'a> {
        Guard(self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_limit_keeping_one_old_file() {
        let dir = std::env::temp_dir().join(format!("agentfs-rlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("router.log");
        let log = RotatingLog::open(path.clone(), 1000).unwrap();
        use tracing_subscriber::fmt::MakeWriter;
        for _ in 0..250 {
            log.make_writer().write_all(b"0123456789\n").unwrap();
        }
        let now = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(now <= 1000 + 11 && old <= 1000 + 11, "{now} {old}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "router.log and router.log.1 only");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
