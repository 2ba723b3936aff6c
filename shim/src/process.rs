//! Which process the shim's books belong to. A `vfork()` child (Python's
//! subprocess uses one) shares the parent's memory but not its descriptors:
//! hooks running there before `exec` (closing inherited descriptors, dup2
//! onto 0-2) must not change the parent's records. Neither may a raw
//! `clone()` child. The pid is cached in the constructor and after `fork()`;
//! a mismatch with `getpid()` means "not our books".

use std::sync::atomic::{AtomicU32, Ordering};

static OWNER: AtomicU32 = AtomicU32::new(0);

/// Records the current process as the owner (constructor, fork child).
pub fn adopt() {
    OWNER.store(std::process::id(), Ordering::Relaxed);
}

/// Whether this process may change the shim's records (always true before
/// the constructor has run, e.g. in unit tests).
pub fn is_owner() -> bool {
    let owner = OWNER.load(Ordering::Relaxed);
    owner == 0 || owner == std::process::id()
}
