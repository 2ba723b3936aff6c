//! Phase 3 of a request: a connection to the app. Each upstream (one socket
//! or TCP address) keeps its idle HTTP/1.1 connections for reuse, so a page
//! load with a hundred module requests opens a handful of connections, not a
//! hundred. A connection goes back to the pool only once hyper says it is
//! ready for the next request (its response fully read), never while a body
//! still streams.
//!
//! The lean path (see `lean`) keeps its own idle streams to each upstream
//! beside hyper's: it speaks HTTP/1.1 on the bare stream.
//!
//! Idle connections are kept per shard (see `shards`): a connection's task
//! runs on the shard that opened it, so a request is only ever sent on a
//! connection of its own thread. Check-out takes the most recently used one
//! (warm, least likely to have been closed by the app); check-in drops the
//! oldest ones past their age. Both are O(1) and read the clock once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentfs_registry::Target;
use agentfs_registry::scan::Listener;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::body::RequestBody;
use crate::shards;
pub use crate::stream::ConnectError;
use crate::stream::{self, AppStream};

/// Idle connections older than this are not reused: Node closes idle
/// keep-alive connections after 5 s, and reusing one it is closing fails.
const IDLE_MAX: Duration = Duration::from_secs(4);
/// Idle connections kept per upstream and shard.
const IDLE_CAP: usize = 512;

/// A sender for requests to one upstream connection.
pub type Sender = SendRequest<RequestBody>;

/// Idle connections and when each went idle, oldest first; per shard.
type Idle<T> = Box<[Mutex<VecDeque<(T, Instant)>>]>;

/// One place requests can go, with its idle connections.
pub struct Upstream {
    pub target: Target,
    /// The discovered listener behind it; `None` for a static route.
    pub listener: Option<Listener>,
    /// hyper connections, for the general path.
    idle: Idle<Sender>,
    /// Bare streams, for the lean path.
    streams: Idle<AppStream>,
    dead: AtomicBool,
}

impl Upstream {
    pub fn new(target: Target, listener: Option<Listener>) -> Arc<Upstream> {
        let idle = (0..shards::count()).map(|_| Mutex::default()).collect();
        let streams = (0..shards::count()).map(|_| Mutex::default()).collect();
        Arc::new(Upstream { target, listener, idle, streams, dead: AtomicBool::new(false) })
    }

    /// Whether the last connect attempt found nothing listening.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// A new stream, bypassing the idle ones.
    /// A listener that is busy (its accept queue full) is tried again for a
    /// while, as TCP would (see [`stream::connect_patiently`]).
    pub async fn connect_stream(&self) -> Result<AppStream, ConnectError> {
        if let (None, Target::Unix(path)) = (&self.listener, &self.target) {
            // A static route's socket: checked now, it may be new since the route was made.
            use agentfs_registry::static_target::{Refused, check_connectable};
            match check_connectable(path) {
                Ok(()) | Err(Refused::Unusable(_)) => {} // not there: the connect says so
                Err(e) => return Err(ConnectError::Io(std::io::Error::other(e.to_string()))),
            }
        }
        let alive = || self.listener.as_ref().is_none_or(Listener::maybe_alive);
        let result = stream::connect_patiently(&self.target, alive).await;
        self.dead.store(matches!(result, Err(ConnectError::Gone(_))), Ordering::Relaxed);
        result
    }

    /// A new hyper connection, bypassing the idle ones.
    pub async fn connect(&self) -> Result<Sender, ConnectError> {
        handshake(self.connect_stream().await?).await
    }

    /// This shard's most recently used idle connection, if one is usable.
    pub fn pop_idle(&self) -> Option<Sender> {
        pop(&self.idle, |tx| !tx.is_closed() && tx.is_ready())
    }

    /// This shard's most recently used idle stream that is young enough and
    /// clean (see [`AppStream::is_clean`]).
    pub fn pop_stream(&self) -> Option<AppStream> {
        pop(&self.streams, AppStream::is_clean)
    }

    /// Keeps a stream whose last response was read to its end.
    pub fn checkin_stream(&self, s: AppStream) {
        push(&self.streams, s, |_| false);
    }

    fn checkin(&self, tx: Sender) {
        push(&self.idle, tx, Sender::is_closed);
    }
}

/// This shard's idle list.
fn slot<T>(idle: &Idle<T>) -> MutexGuard<'_, VecDeque<(T, Instant)>> {
    let slot = &idle[shards::current() % idle.len()];
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The newest idle entry that is `usable`; drops older ones past their age.
fn pop<T>(idle: &Idle<T>, usable: impl Fn(&T) -> bool) -> Option<T> {
    let mut idle = slot(idle);
    let mut now = None;
    while let Some((c, since)) = idle.pop_back() {
        let now = *now.get_or_insert_with(Instant::now);
        if now.saturating_duration_since(since) >= IDLE_MAX {
            idle.clear(); // the rest are older still
            return None;
        }
        if usable(&c) {
            return Some(c);
        }
    }
    None
}

/// Adds `c` as the newest idle entry, first dropping the oldest ones that
/// are past their age or `closed`.
fn push<T>(idle: &Idle<T>, c: T, closed: impl Fn(&T) -> bool) {
    let now = Instant::now();
    let mut idle = slot(idle);
    while idle.front().is_some_and(|(c, since)| closed(c) || now.saturating_duration_since(*since) >= IDLE_MAX) {
        idle.pop_front();
    }
    if idle.len() < IDLE_CAP {
        idle.push_back((c, now));
    }
}

/// Returns `tx` to `up`'s pool: at once if its connection can take another
/// request (its response has been read to the end), else once it can (a task
/// waits for that); dropped if it closes.
pub fn recycle(up: Arc<Upstream>, mut tx: Sender) {
    if tx.is_ready() {
        return up.checkin(tx);
    }
    tokio::spawn(async move {
        if tx.ready().await.is_ok() {
            up.checkin(tx);
        }
    });
}

async fn handshake(stream: AppStream) -> Result<Sender, ConnectError> {
    let (tx, conn) = http1::Builder::new()
        .max_buf_size(1024 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    let span = tracing::debug_span!("upstream");
    tokio::spawn(
        async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        }
        .instrument(span),
    );
    Ok(tx)
}

#[cfg(test)]
impl Upstream {
    pub fn mark_dead_for_test(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }
}
