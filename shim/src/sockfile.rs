//! The files of one converted listener — `<stem>.sock`, its sidecar
//! `<stem>.json`, and the claim `.<stem>.claim` that marks a socket bound but
//! not yet listening — and their removal, which runs inside close() and at
//! exit: allocation-free, and only while the socket file is still the one
//! this process bound (same device and inode), so a socket that another
//! process has since put at that path is never removed.

/// Longest socket file path kept (the real path, which may exceed sun_path).
pub const PATH_MAX: usize = 320;
const BUF: usize = PATH_MAX + 16;

/// A socket file and the identity it had when it was bound.
#[derive(Clone, Copy, Debug)]
pub struct SockFile {
    path: [u8; PATH_MAX],
    len: usize,
    dev: u64,
    ino: u64,
}

impl SockFile {
    pub const EMPTY: SockFile = SockFile { path: [0; PATH_MAX], len: 0, dev: 0, ino: 0 };

    /// `path` must end in `.sock` and fit; the identity is read now (call
    /// right after a successful bind).
    pub fn bound(path: &[u8]) -> Option<SockFile> {
        if path.len() >= PATH_MAX || !path.ends_with(b".sock") || path.contains(&0) {
            return None;
        }
        let mut f = SockFile { len: path.len(), ..SockFile::EMPTY };
        f.path[..path.len()].copy_from_slice(path);
        let (dev, ino) = f.identity()?;
        f.dev = dev;
        f.ino = ino;
        Some(f)
    }

    pub fn path(&self) -> &[u8] {
        &self.path[..self.len]
    }

    /// The socket path with `.sock` replaced by `ext`, NUL-terminated.
    fn with_ext(&self, ext: &[u8]) -> [u8; BUF] {
        let mut buf = [0u8; BUF];
        let stem = self.len - ".sock".len();
        buf[..stem].copy_from_slice(&self.path[..stem]);
        buf[stem..stem + ext.len()].copy_from_slice(ext);
        buf
    }

    /// `<dir>/.<stem>.claim`, NUL-terminated.
    fn claim(&self) -> [u8; BUF] {
        let mut buf = [0u8; BUF];
        let stem_end = self.len - ".sock".len();
        let slash = self.path[..stem_end].iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
        buf[..slash].copy_from_slice(&self.path[..slash]);
        buf[slash] = b'.';
        let name = &self.path[slash..stem_end];
        buf[slash + 1..slash + 1 + name.len()].copy_from_slice(name);
        let at = slash + 1 + name.len();
        buf[at..at + 6].copy_from_slice(b".claim");
        buf
    }

    fn identity(&self) -> Option<(u64, u64)> {
        let mut buf = [0u8; BUF];
        buf[..self.len].copy_from_slice(self.path());
        // SAFETY: an all-zero stat is a valid out-buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `buf` is NUL-terminated; `st` is a valid out-buffer.
        (unsafe { libc::lstat(buf.as_ptr().cast(), &mut st) } == 0).then_some((st.st_dev as u64, st.st_ino as u64))
    }

    /// Whether the file at the path is still the socket this process bound.
    pub fn still_ours(&self) -> bool {
        self.len != 0 && self.identity() == Some((self.dev, self.ino))
    }

    /// Removes socket, sidecar and claim — only while the socket is ours.
    pub fn remove(&self) {
        if !self.still_ours() {
            return;
        }
        for path in [self.with_ext(b".sock"), self.with_ext(b".json"), self.claim()] {
            // SAFETY: each buffer is NUL-terminated within its bounds.
            unsafe { libc::unlink(path.as_ptr().cast()) };
        }
    }

    /// Removes the claim once the sidecar says the socket listens.
    pub fn remove_claim(&self) {
        let claim = self.claim();
        // SAFETY: NUL-terminated within its bounds.
        unsafe { libc::unlink(claim.as_ptr().cast()) };
    }
}

pub use agentfs_registry::claim::claim_path;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixListener;

    #[test]
    fn removes_only_what_it_bound() {
        let dir = std::env::temp_dir().join(format!("agentfs-sockfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("a.b.1.sock");
        let first = UnixListener::bind(&sock).unwrap();
        let f = SockFile::bound(sock.as_os_str().as_bytes()).unwrap();
        std::fs::write(dir.join("a.b.1.json"), b"{}").unwrap();
        std::fs::write(claim_path(&sock).unwrap(), b"1").unwrap();
        assert_eq!(claim_path(&sock).unwrap(), dir.join(".a.b.1.claim"));
        assert!(f.still_ours());

        // Another process replaced it: nothing of it is removed.
        std::fs::write(dir.join("tmp"), b"").unwrap();
        std::fs::rename(dir.join("tmp"), &sock).unwrap();
        drop(first);
        assert!(!f.still_ours());
        f.remove();
        assert!(sock.exists() && dir.join("a.b.1.json").exists());

        std::fs::remove_file(&sock).unwrap();
        let _second = UnixListener::bind(&sock).unwrap();
        let g = SockFile::bound(sock.as_os_str().as_bytes()).unwrap();
        g.remove_claim();
        assert!(!dir.join(".a.b.1.claim").exists());
        g.remove();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(SockFile::bound(&[b'a'; PATH_MAX]).is_none());
        assert!(SockFile::bound(b"/x/y.json").is_none());
        assert!(SockFile::bound(b"/nonexistent/y.sock").is_none(), "nothing bound there");
    }
}
