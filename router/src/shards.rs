//! The runtime shape of [`crate::run`]: one single-threaded tokio runtime per
//! CPU (a "shard"); the main thread accepts and hands each connection to one
//! (see `server`). A shard serves each connection it is given from start to
//! end: the request, the pooled upstream connection it is sent on (each
//! upstream keeps idle connections per shard) and any tunnel it turns into
//! all live on one thread. So the request path has no work stealing and no
//! cross-thread wake-ups — on a small machine shared with the apps and the
//! load, every extra context switch is a request not served. The main thread
//! keeps the rest: signals, discovery, the management API.
//!
//! Connections fill the shards in order ([`pick`]): a shard only gets
//! connections once those before it hold [`FILL`] each, then the least
//! loaded takes the next. At the concurrency of a browser or a test run, one
//! thread serves everything with bigger batches per wake-up and no second
//! thread contending for the CPUs with the apps; under heavy load every
//! shard works. (Measured on 2 CPUs with `scripts/bench.sh`'s proxy set-up,
//! two routers side by side, against spreading evenly: 4–7% more requests
//! per second and a lower p99 at `wrk -c50`, 12% more at `-c200`; at `-c500`
//! both rules spread alike.) The threshold is a count, not a CPU share: open
//! connections include idle keep-alive ones and tunnels, and one shard of
//! this router serves well over 50,000 plain requests per second, more than
//! any dev server behind it, so on a many-core machine a 50-connection load
//! test also runs on one shard, by design.
//!
//! A router served by [`crate::serve`] on the caller's runtime (the tests)
//! has no shards: its connections run on that runtime, as shard 0.

use std::cell::Cell;
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Shards started in this process (1 without any: the caller's runtime).
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// The shard this thread is (0 on any other thread).
pub fn current() -> usize {
    SHARD.with(Cell::get)
}

/// How many shards there are, for per-shard state.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Open connections a shard takes before the next shard gets any.
pub const FILL: usize = 64;

/// Where the next connection goes, given each shard's open connections: the
/// first one holding fewer than [`FILL`], else the least loaded.
pub fn pick(load: &[AtomicUsize]) -> usize {
    let open = |n: &AtomicUsize| n.load(Ordering::Relaxed);
    if let Some(i) = load.iter().position(|n| open(n) < FILL) {
        return i;
    }
    load.iter().enumerate().min_by_key(|(_, n)| open(n)).map_or(0, |(i, _)| i)
}

/// One shard per CPU this process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Running shards; [`Shards::stop`] ends them.
pub struct Shards {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts `n` shard threads, each running its own runtime until stopped.
    pub fn start(n: usize) -> io::Result<Shards> {
        let mut shards = Shards { handles: Vec::new(), stops: Vec::new(), threads: Vec::new() };
        COUNT.fetch_max(n.max(1), Ordering::Relaxed);
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            shards.handles.push(rt.handle().clone());
            shards.stops.push(stop);
            let thread = std::thread::Builder::new().name(format!("router-shard-{i}")).spawn(move || {
                SHARD.with(|s| s.set(i));
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
            shards.threads.push(thread);
        }
        Ok(shards)
    }

    /// Where to spawn each shard's connection tasks.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops every shard (tasks still running there, such as open tunnels,
    /// are dropped) and waits for the threads.
    pub fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(open: &[usize]) -> Vec<AtomicUsize> {
        open.iter().map(|&n| AtomicUsize::new(n)).collect()
    }

    #[test]
    fn fills_the_first_shards_before_spreading() {
        assert_eq!(pick(&loads(&[0, 0, 0])), 0);
        assert_eq!(pick(&loads(&[FILL - 1, 0, 0])), 0);
        assert_eq!(pick(&loads(&[FILL, 0, 0])), 1);
        assert_eq!(pick(&loads(&[FILL, FILL + 3, 5])), 2);
        // A shard emptied again is refilled first.
        assert_eq!(pick(&loads(&[3, FILL, FILL])), 0);
    }

    #[test]
    fn all_full_goes_to_the_least_loaded() {
        assert_eq!(pick(&loads(&[FILL + 9, FILL + 2, FILL + 5])), 1);
        assert_eq!(pick(&loads(&[FILL, FILL])), 0);
        assert_eq!(pick(&[]), 0);
    }
}
