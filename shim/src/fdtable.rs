//! What the shim knows about each descriptor it converted or accepted: the
//! TCP-shaped addresses to report and the faked options. Indexed by fd in
//! chunks mapped on first use (mmap, never malloc), one spin lock per entry,
//! so hooks on close/dup/accept stay allocation-free and fork-safe.
//!
//! Entries are hints kept in step by the hooks that create or destroy
//! descriptors (socket, accept, dup*, fcntl, close*). A descriptor closed
//! behind the shim's back (libuv's raw `syscall(SYS_close)`) leaves a stale
//! entry, which the next hook that hands out that number clears. Only the
//! owning process changes entries (`process`: not a vfork child).

use std::sync::atomic::{AtomicPtr, Ordering};

use libc::c_int;

use crate::lock::SpinCell;
use crate::options::Options;
use crate::sockaddr::Addr;

/// What a descriptor is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// Not tracked (the zeroed state).
    #[default]
    Free = 0,
    /// A converted listening socket.
    Listener = 1,
    /// A connection accepted from a converted listener.
    Conn = 2,
    /// A client socket whose connect() went to an instance's Unix socket.
    Client = 3,
}

/// The state of one descriptor; plain data, valid when zeroed.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdState {
    pub kind: Kind,
    /// What getsockname reports.
    pub local: Addr,
    /// What getpeername reports (port 0: derive it when first asked).
    pub peer: Addr,
    /// 1-based slot in `listeners` when this process owns the socket file.
    pub listener: u16,
    pub options: Options,
    /// A connection whose peer had left when the app wrote: TCP would have
    /// been reset by now (`peerreset`).
    pub reset: bool,
    /// The app shut down its writing (a write is EPIPE on TCP too).
    pub shut_wr: bool,
}

const CHUNK: usize = 256;
const CHUNKS: usize = 4096;

/// Largest descriptor tracked; higher ones pass through untouched.
pub const MAX_FD: usize = CHUNK * CHUNKS;

struct Chunk {
    entries: [SpinCell<FdState>; CHUNK],
}

static DIRECTORY: [AtomicPtr<Chunk>; CHUNKS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];

fn split(fd: c_int) -> Option<(usize, usize)> {
    let fd = usize::try_from(fd).ok().filter(|fd| *fd < MAX_FD)?;
    Some((fd / CHUNK, fd % CHUNK))
}

fn chunk(index: usize) -> Option<&'static Chunk> {
    let p = DIRECTORY[index].load(Ordering::Acquire);
    // SAFETY: a published chunk is never unmapped, and is valid zeroed memory.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn chunk_or_map(index: usize) -> Option<&'static Chunk> {
    if let Some(c) = chunk(index) {
        return Some(c);
    }
    let size = std::mem::size_of::<Chunk>();
    // SAFETY: an anonymous private mapping has no preconditions; it is zero-filled,
    // and an all-zero Chunk is valid (spin words 0 = free, FdState zeroed = Free).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANON,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let new = p.cast::<Chunk>();
    match DIRECTORY[index].compare_exchange(std::ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => chunk(index),
        Err(_) => {
            // SAFETY: `p` is our own mapping of `size` bytes, never published.
            unsafe { libc::munmap(p, size) };
            chunk(index)
        }
    }
}

fn entry(fd: c_int) -> Option<&'static SpinCell<FdState>> {
    let (c, i) = split(fd)?;
    chunk(c).map(|c| &c.entries[i])
}

/// The state of `fd`, if tracked.
pub fn get(fd: c_int) -> Option<FdState> {
    entry(fd)?.with(|s| *s).into_tracked()
}

/// Tracks `fd` (replacing any previous state, which is returned). Nothing
/// changes outside the owning process (see `process`).
pub fn set(fd: c_int, state: FdState) -> Option<FdState> {
    if !crate::process::is_owner() {
        return None;
    }
    let (c, i) = split(fd)?;
    chunk_or_map(c)?.entries[i].with(|s| std::mem::replace(s, state)).into_tracked()
}

/// What `fd` is, without copying its state (for hooks on every write).
pub fn kind(fd: c_int) -> Kind {
    entry(fd).map_or(Kind::Free, |e| e.with(|s| s.kind))
}

/// Stops tracking `fd`, returning what was known (nothing outside the owning
/// process, which only pays for the check when `fd` is tracked).
pub fn take(fd: c_int) -> Option<FdState> {
    let e = entry(fd)?;
    if e.with(|s| s.kind == Kind::Free) || !crate::process::is_owner() {
        return None;
    }
    e.with(std::mem::take).into_tracked()
}

/// Changes a tracked entry in place; `false` if `fd` is not tracked.
pub fn update(fd: c_int, f: impl FnOnce(&mut FdState)) -> bool {
    if !crate::process::is_owner() {
        return false;
    }
    entry(fd).is_some_and(|e| {
        e.with(|s| {
            if s.kind == Kind::Free {
                return false;
            }
            f(s);
            true
        })
    })
}

/// Descriptors (in mapped chunks, within `first..=last`) that are tracked.
pub fn tracked_in(first: c_int, last: c_int, mut f: impl FnMut(c_int, FdState)) {
    let first = usize::try_from(first).unwrap_or(0);
    let last = usize::try_from(last).unwrap_or(0).min(MAX_FD - 1);
    if first > last {
        return;
    }
    for c in first / CHUNK..=last / CHUNK {
        let Some(chunk) = chunk(c) else { continue };
        for (i, e) in chunk.entries.iter().enumerate() {
            let fd = c * CHUNK + i;
            if fd < first || fd > last {
                continue;
            }
            if let Some(state) = e.with(|s| *s).into_tracked() {
                f(fd as c_int, state);
            }
        }
    }
}

trait IntoTracked {
    fn into_tracked(self) -> Option<FdState>;
}

impl IntoTracked for FdState {
    fn into_tracked(self) -> Option<FdState> {
        (self.kind != Kind::Free).then_some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kind: Kind, port: u16) -> FdState {
        FdState { kind, local: Addr { port, ..Addr::default() }, ..FdState::default() }
    }

    #[test]
    fn set_get_take() {
        let fd = 70_000;
        assert!(get(fd).is_none());
        assert!(set(fd, state(Kind::Listener, 3000)).is_none());
        assert_eq!(get(fd).unwrap().local.port, 3000);
        assert!(update(fd, |s| s.local.port = 3001));
        let old = set(fd, state(Kind::Conn, 1)).unwrap();
        assert_eq!((old.kind, old.local.port), (Kind::Listener, 3001));
        assert_eq!(take(fd).unwrap().kind, Kind::Conn);
        assert!(get(fd).is_none());
        assert!(!update(fd, |_| {}));
    }

    #[test]
    fn out_of_range_fds_are_not_tracked() {
        assert!(set(-1, state(Kind::Listener, 1)).is_none());
        assert!(get(-1).is_none());
        assert!(set(MAX_FD as c_int, state(Kind::Listener, 1)).is_none());
        assert!(get(MAX_FD as c_int).is_none());
    }

    #[test]
    fn range_walk() {
        for fd in [80_001, 80_003, 80_300] {
            set(fd, state(Kind::Conn, fd as u16));
        }
        let mut seen = Vec::new();
        tracked_in(80_000, 80_299, |fd, _| seen.push(fd));
        assert_eq!(seen, [80_001, 80_003]);
        for fd in [80_001, 80_003, 80_300] {
            take(fd);
        }
    }
}
