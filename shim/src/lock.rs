//! A spin lock that a forked child can never find held. Critical sections
//! are a few copies, never a system call, so spinning is cheap; a lock word
//! holds the fork generation of its holder, and the child of a fork starts a
//! new generation, so a lock held by a parent thread that does not exist in
//! the child reads as free. No allocation, usable on fork and signal paths
//! (signal re-entry on the same thread is stopped earlier by `guard`).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};

static GENERATION: AtomicU32 = AtomicU32::new(1);

/// Called in the child after fork: every lock taken before the fork is free.
pub fn after_fork_child() {
    let next = GENERATION.load(Ordering::Relaxed).wrapping_add(1).max(1);
    GENERATION.store(next, Ordering::Relaxed);
}

/// Data guarded by a generation spin lock.
pub struct SpinCell<T> {
    word: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `word` (see `with`).
unsafe impl<T: Send> Sync for SpinCell<T> {}

impl<T> SpinCell<T> {
    pub const fn new(value: T) -> SpinCell<T> {
        SpinCell { word: AtomicU32::new(0), value: UnsafeCell::new(value) }
    }

    /// Runs `f` with exclusive access. `f` must be short and must not call
    /// back into the shim's tables.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.with_generation(GENERATION.load(Ordering::Relaxed), f)
    }

    fn with_generation<R>(&self, generation: u32, f: impl FnOnce(&mut T) -> R) -> R {
        let mut spins = 0u32;
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if cur != generation
                && self.word.compare_exchange_weak(cur, generation, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            } else {
                std::hint::spin_loop();
            }
        }
        struct Unlock<'a>(&'a AtomicU32);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(0, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.word);
        // SAFETY: the lock word holds this generation, so no other thread of
        // this process is inside `with` for this cell.
        f(unsafe { &mut *self.value.get() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn serialises_threads() {
        let cell = Arc::new(SpinCell::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&cell);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.with(|v| *v += 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cell.with(|v| *v), 40_000);
    }

    #[test]
    fn a_held_lock_reads_free_in_a_new_generation() {
        let cell = SpinCell::new(1);
        // A holder from before the fork (generation 7); the child runs generation 8.
        cell.word.store(7, Ordering::Relaxed);
        assert_eq!(cell.with_generation(8, |v| *v), 1, "does not spin forever");
        assert_eq!(cell.word.load(Ordering::Relaxed), 0, "released");
    }
}
