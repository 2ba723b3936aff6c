//! The runtime shape of [`crate::run`]: one single-threaded tokio runtime per
//! CPU (a "shard"), all accepting from the same listening sockets. A shard
//! serves each connection it accepted from start to end: the request, the
//! pooled upstream connection it is sent on (each upstream keeps idle
//! connections per shard) and any tunnel it turns into all live on one
//! thread. So the request path has no work stealing and no cross-thread
//! wake-ups — on a small machine shared with the apps and the load, every
//! extra context switch is a request not served. The main thread keeps the
//! rest: signals, discovery, the management API.
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

    /// Where to spawn each shard's accept loops.
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
