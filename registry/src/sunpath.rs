//! `sockaddr_un.sun_path` holds 108 bytes on Linux and 104 on macOS. Names that
//! would not fit get a hashed stem (see `runfile`); a run directory that is
//! itself too deep is reached through `/proc/self/fd/<dirfd>/` on Linux.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Size of `sun_path` on this platform.
pub const SUN_PATH_LEN: usize = if cfg!(any(target_os = "macos", target_os = "ios")) { 104 } else { 108 };

/// Whether `path` fits in `sun_path` with its terminating NUL.
pub fn fits(path: &Path) -> bool {
    path.as_os_str().len() < SUN_PATH_LEN
}

/// A path to a socket that can be handed to `bind`/`connect`: the path itself
/// when it fits, else (Linux) `/proc/self/fd/<n>/<name>` through a directory
/// descriptor that this value keeps open.
#[derive(Debug)]
pub struct SockPath {
    path: PathBuf,
    _dir: Option<File>,
}

impl SockPath {
    pub fn new(path: &Path) -> io::Result<SockPath> {
        if fits(path) {
            return Ok(SockPath { path: path.to_owned(), _dir: None });
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(too_long(path));
        };
        if !cfg!(target_os = "linux") {
            return Err(too_long(path));
        }
        let dir = File::open(dir)?;
        let alias = proc_alias(dir.as_raw_fd(), name);
        if !fits(&alias) {
            return Err(too_long(path));
        }
        Ok(SockPath { path: alias, _dir: Some(dir) })
    }

    /// The path to pass to the system call, valid while `self` lives.
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

/// `/proc/self/fd/<fd>/<name>`.
pub fn proc_alias(dir_fd: i32, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{dir_fd}"));
    p.push(name);
    p
}

fn too_long(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "socket path {} is {} bytes, more than sun_path holds ({}); use a shorter AGENTFS_HOME",
            path.display(),
            path.as_os_str().as_bytes().len(),
            SUN_PATH_LEN - 1
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_pass_through() {
        let p = SockPath::new(Path::new("/tmp/x.sock")).unwrap();
        assert_eq!(p.as_path(), Path::new("/tmp/x.sock"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn long_paths_go_through_proc() {
        let base = std::env::temp_dir().join(format!("agentfs-sunpath-{}", std::process::id()));
        let deep = base.join("d".repeat(100)).join("e".repeat(40));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("s.sock");
        assert!(!fits(&sock));
        let alias = SockPath::new(&sock).unwrap();
        assert!(alias.as_path().starts_with("/proc/self/fd/"));
        let listener = std::os::unix::net::UnixListener::bind(alias.as_path()).unwrap();
        assert!(sock.exists(), "the socket lands at the long path");
        let alias2 = SockPath::new(&sock).unwrap();
        std::os::unix::net::UnixStream::connect(alias2.as_path()).unwrap();
        drop(listener);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
