//! Reading the small files of the contract (sidecars, wrapper records,
//! claims, `routes.json`) so that no file in our directories can hang,
//! mislead or exhaust a reader: opened without following a symlink and
//! without blocking (a FIFO named `x.json` would otherwise block `open()`
//! forever), then checked on the open descriptor — a regular file, owned by
//! our effective uid, no larger than the cap — before a byte is read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum SafeReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is not a regular file")]
    NotRegular,
    #[error("belongs to uid {owner}, not to uid {me}")]
    NotOwned { owner: u32, me: u32 },
    #[error("is {size} bytes, more than the {cap} bytes such a file may hold")]
    TooLarge { size: u64, cap: u64 },
}

impl SafeReadError {
    /// A file that is not there (or vanished while being opened).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SafeReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads `path` whole if it is a regular file of ours of at most `cap` bytes.
/// A symlink at `path` is refused (`ELOOP`), a FIFO or device is refused
/// without blocking.
pub fn read_small(path: &Path, cap: u64) -> Result<Vec<u8>, SafeReadError> {
    let file = open_checked(path, cap)?;
    let mut bytes = Vec::new();
    // A file that grew after the check is still read only up to the cap + 1,
    // so that growth is seen as too large rather than read without bound.
    file.take(cap + 1).read_to_end(&mut bytes)?;
    let size = bytes.len() as u64;
    if size > cap {
        return Err(SafeReadError::TooLarge { size, cap });
    }
    Ok(bytes)
}

/// Opens `path` for reading with the checks of [`read_small`].
pub fn open_checked(path: &Path, cap: u64) -> Result<File, SafeReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(SafeReadError::NotRegular);
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SafeReadError::NotOwned { owner: meta.uid(), me });
    }
    if meta.len() > cap {
        return Err(SafeReadError::TooLarge { size: meta.len(), cap });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::time::{Duration, Instant};

    #[test]
    fn reads_small_regular_files() {
        let t = TempDir::new("safe");
        let p = t.path().join("a.json");
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read_small(&p, 16).unwrap(), b"{}");
        assert!(read_small(&t.path().join("missing"), 16).unwrap_err().is_not_found());
    }

    #[test]
    fn fifos_symlinks_and_big_files_are_refused_at_once() {
        let t = TempDir::new("safe");
        let fifo = t.path().join("f.json");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let started = Instant::now();
        assert!(matches!(read_small(&fifo, 16), Err(SafeReadError::NotRegular)));
        assert!(started.elapsed() < Duration::from_secs(1), "a FIFO must not block");

        let real = t.path().join("real.json");
        std::fs::write(&real, b"{}").unwrap();
        let link = t.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(read_small(&link, 16), Err(SafeReadError::Io(_))));

        let big = t.path().join("big.json");
        std::fs::write(&big, vec![b' '; 100]).unwrap();
        assert!(matches!(read_small(&big, 99), Err(SafeReadError::TooLarge { size: 100, cap: 99 })));
        assert!(read_small(t.path(), 16).is_err(), "a directory is not a record");
    }

    #[test]
    fn other_users_files_are_refused() {
        if !rustix::process::geteuid().is_root() {
            return eprintln!("skipped: needs root to give a file to another uid");
        }
        let t = TempDir::new("safe");
        let p = t.path().join("theirs.json");
        std::fs::write(&p, b"{}").unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        assert!(matches!(read_small(&p, 16), Err(SafeReadError::NotOwned { owner: 65534, me: 0 })));
    }
}
