//! Phase 3 of a request: a connection to the app. Each upstream (one socket
//! or TCP address) keeps its idle HTTP/1.1 connections for reuse, so a page
//! load with a hundred module requests opens a handful of connections, not a
//! hundred. A connection goes back to the pool only once hyper says it is
//! ready for the next request (its response fully read), never while a body
//! still streams.
//!
//! Idle connections are kept per shard (see `shards`): a connection's task
//! runs on the shard that opened it, so a request is only ever sent on a
//! connection of its own thread. Check-out takes the most recently used one
//! (warm, least likely to have been closed by the app); check-in drops the
//! oldest ones past their age. Both are O(1) and read the clock once.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentfs_registry::Target;
use agentfs_registry::scan::Listener;
use agentfs_registry::sunpath::SockPath;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::shards;

/// Idle connections older than this are not reused: Node closes idle
/// keep-alive connections after 5 s, and reusing one it is closing fails.
const IDLE_MAX: Duration = Duration::from_secs(4);
/// Idle connections kept per upstream and shard.
const IDLE_CAP: usize = 512;

/// A sender for requests to one upstream connection.
pub type Sender = SendRequest<Incoming>;

/// Why a new connection to an upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there (ECONNREFUSED) or the socket file is gone.
    #[error("{0}")]
    Gone(io::Error),
    #[error("{0}")]
    Io(io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(hyper::Error),
}

impl ConnectError {
    fn from_io(e: io::Error) -> ConnectError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ConnectError::Gone(e),
            _ => ConnectError::Io(e),
        }
    }
}

/// Idle connections and when each went idle, oldest first.
type Idle = VecDeque<(Sender, Instant)>;

/// One place requests can go, with its idle connections.
pub struct Upstream {
    pub target: Target,
    /// The discovered listener behind it; `None` for a static route.
    pub listener: Option<Listener>,
    /// Per shard.
    idle: Box<[Mutex<Idle>]>,
    dead: AtomicBool,
}

impl Upstream {
    pub fn new(target: Target, listener: Option<Listener>) -> Arc<Upstream> {
        let idle = (0..shards::count()).map(|_| Mutex::default()).collect();
        Arc::new(Upstream { target, listener, idle, dead: AtomicBool::new(false) })
    }

    /// Whether the last connect attempt found nothing listening.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// A new connection, bypassing the idle ones.
    pub async fn connect(&self) -> Result<Sender, ConnectError> {
        let result = match &self.target {
            Target::Unix(path) => connect_unix(path).await,
            Target::Tcp { host, port } => connect_tcp(host, *port).await,
        };
        self.dead.store(matches!(result, Err(ConnectError::Gone(_))), Ordering::Relaxed);
        result
    }

    /// This shard's idle connections.
    fn idle(&self) -> MutexGuard<'_, Idle> {
        let slot = &self.idle[shards::current() % self.idle.len()];
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This shard's most recently used idle connection, if one is usable.
    pub fn pop_idle(&self) -> Option<Sender> {
        let mut idle = self.idle();
        let mut now = None;
        while let Some((tx, since)) = idle.pop_back() {
            let now = *now.get_or_insert_with(Instant::now);
            if now.saturating_duration_since(since) >= IDLE_MAX {
                idle.clear(); // the rest are older still
                return None;
            }
            if !tx.is_closed() && tx.is_ready() {
                return Some(tx);
            }
        }
        None
    }

    fn checkin(&self, tx: Sender) {
        let now = Instant::now();
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|(tx, since)| tx.is_closed() || now.saturating_duration_since(*since) >= IDLE_MAX)
        {
            idle.pop_front();
        }
        if idle.len() < IDLE_CAP {
            idle.push_back((tx, now));
        }
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

async fn connect_unix(path: &std::path::Path) -> Result<Sender, ConnectError> {
    let sock = SockPath::new(path).map_err(ConnectError::from_io)?;
    let stream = tokio::net::UnixStream::connect(sock.as_path()).await.map_err(ConnectError::from_io)?;
    handshake(stream).await
}

async fn connect_tcp(host: &str, port: u16) -> Result<Sender, ConnectError> {
    let addrs: Vec<std::net::SocketAddr> = if host == "localhost" {
        vec![([127, 0, 0, 1], port).into(), (std::net::Ipv6Addr::LOCALHOST, port).into()]
    } else {
        tokio::net::lookup_host((host, port)).await.map_err(ConnectError::Io)?.collect()
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return handshake(stream).await;
            }
            Err(e) => last = e,
        }
    }
    Err(ConnectError::from_io(last))
}

async fn handshake<S>(stream: S) -> Result<Sender, ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
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
