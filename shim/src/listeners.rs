//! Socket files this process created, and how many of its descriptors still
//! refer to each. The file (and its sidecar) is removed when the last one is
//! closed — only in the process that bound it, never in a forked child that
//! closes what it inherited — and at exit, and only while it is still the
//! file this process bound (`sockfile`). Fixed-size, allocation-free: the
//! release runs inside close().

use std::sync::atomic::{AtomicU32, Ordering};

use crate::lock::SpinCell;
use crate::process;
use crate::sockaddr::Addr;
use crate::sockfile::SockFile;

/// Most socket files one process can own at once; past that, binds pass
/// through (fail open).
pub const MAX: usize = 64;

/// One owned socket file; plain data.
#[derive(Clone, Copy, Debug)]
pub struct Listener {
    pub used: bool,
    /// The binding process: only it removes the file.
    pub pid: u32,
    pub file: SockFile,
    /// What the app bound (reported by getsockname).
    pub local: Addr,
    pub v6only: bool,
    pub reuseport: bool,
    /// The sidecar has been written (after listen).
    pub announced: bool,
}

impl Listener {
    const EMPTY: Listener = Listener {
        used: false,
        pid: 0,
        file: SockFile::EMPTY,
        local: Addr { v6: false, ip: [0; 16], port: 0 },
        v6only: false,
        reuseport: false,
        announced: false,
    };

    /// A record for the socket just bound at `path`; `None` if the path is
    /// too long to keep or nothing is bound there.
    pub fn new(path: &[u8], local: Addr, v6only: bool, reuseport: bool) -> Option<Listener> {
        let file = SockFile::bound(path)?;
        Some(Listener { used: true, pid: std::process::id(), file, local, v6only, reuseport, announced: false })
    }

    pub fn path(&self) -> &[u8] {
        self.file.path()
    }
}

struct Slot {
    data: SpinCell<Listener>,
    refs: AtomicU32,
}

static SLOTS: [Slot; MAX] = [const { Slot { data: SpinCell::new(Listener::EMPTY), refs: AtomicU32::new(0) } }; MAX];

fn slot(id: u16) -> Option<&'static Slot> {
    SLOTS.get(usize::from(id).checked_sub(1)?)
}

/// Records a socket file with one reference; returns its 1-based id.
pub fn add(listener: Listener) -> Option<u16> {
    if !process::is_owner() {
        return None;
    }
    for (i, s) in SLOTS.iter().enumerate() {
        let taken = s.data.with(|d| {
            if d.used {
                return false;
            }
            *d = listener;
            true
        });
        if taken {
            s.refs.store(1, Ordering::Release);
            return u16::try_from(i + 1).ok();
        }
    }
    None
}

pub fn get(id: u16) -> Option<Listener> {
    let d = slot(id)?.data.with(|d| *d);
    d.used.then_some(d)
}

/// Another descriptor refers to the socket (dup, dup2, fcntl F_DUPFD).
pub fn add_ref(id: u16) {
    if !process::is_owner() {
        return;
    }
    if let Some(s) = slot(id) {
        s.refs.fetch_add(1, Ordering::AcqRel);
    }
}

/// A descriptor referring to the socket is gone. On the last one, the
/// binding process removes the files.
pub fn release(id: u16) {
    let Some(s) = slot(id).filter(|_| process::is_owner()) else { return };
    let prev = s.refs.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
    if prev != Ok(1) {
        return;
    }
    let mine = std::process::id();
    let owned = s.data.with(|d| {
        let owned = d.used && d.pid == mine;
        let copy = *d;
        *d = Listener::EMPTY;
        owned.then_some(copy)
    });
    if let Some(l) = owned {
        crate::errno::preserve(|| l.file.remove());
    }
}

/// The sidecar is written: the socket listens, its claim can go.
pub fn set_announced(id: u16) {
    if let Some(s) = slot(id).filter(|_| process::is_owner()) {
        let file = s.data.with(|d| {
            d.announced = true;
            d.file
        });
        file.remove_claim();
    }
}

/// The recorded listeners matching `pred`, with their ids (allocates: for
/// the bind path only).
pub fn find(mut pred: impl FnMut(&Listener) -> bool) -> Vec<(u16, Listener)> {
    let mut found = Vec::new();
    for (i, s) in SLOTS.iter().enumerate() {
        let d = s.data.with(|d| *d);
        if d.used && pred(&d) {
            found.push((i as u16 + 1, d));
        }
    }
    found
}

/// Forgets a listener without touching its files (its descriptors are known
/// to be gone, and the caller deals with the files).
pub fn forget(id: u16) {
    if let Some(s) = slot(id).filter(|_| process::is_owner()) {
        s.refs.store(0, Ordering::Release);
        s.data.with(|d| *d = Listener::EMPTY);
    }
}

/// At exit: remove the files of sockets this process still holds.
pub fn remove_all_owned() {
    let mine = std::process::id();
    for s in &SLOTS {
        let d = s.data.with(|d| *d);
        if d.used && d.pid == mine && s.refs.load(Ordering::Acquire) > 0 {
            d.file.remove();
        }
    }
}

/// The fd-table entry of `fd` was found stale or closed: drop its reference.
pub fn release_state(state: Option<crate::fdtable::FdState>) {
    if let Some(st) = state.filter(|s| s.listener != 0) {
        release(st.listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_release_in_the_binding_process_removes_files() {
        let dir = std::env::temp_dir().join(format!("agentfs-listeners-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("a.b.1.sock");
        let json = dir.join("a.b.1.json");
        let _bound = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::write(&json, b"{}").unwrap();
        let path = sock.to_str().unwrap().as_bytes();
        let id = add(Listener::new(path, Addr::default(), false, false).unwrap()).unwrap();
        assert_eq!(get(id).unwrap().path(), path);
        add_ref(id);
        release(id);
        assert!(sock.exists(), "one reference is left");
        release(id);
        assert!(!sock.exists() && !json.exists());
        assert!(get(id).is_none());
        release(id);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_processes_never_remove_files() {
        let dir = std::env::temp_dir().join(format!("agentfs-listeners2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("a.b.2.sock");
        let _bound = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let mut l = Listener::new(sock.to_str().unwrap().as_bytes(), Addr::default(), false, false).unwrap();
        l.pid = 1;
        let id = add(l).unwrap();
        release(id);
        assert!(sock.exists(), "bound by another pid (e.g. the parent of a fork)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
