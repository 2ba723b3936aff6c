//! Accepting clients: one accept loop per listener on the main thread hands
//! each connection to a shard (see `shards`, which says which), where a span
//! and a task serve it to the end: on the lean path (`lean`) while its
//! requests are plain, then on hyper (HTTP/1.1, or h2c chosen by the
//! client's first bytes). (Shards accepting for themselves from a shared socket let one
//! shard take a whole burst of connections while the other slept.) On stop
//! the loops end and drop their listeners (new connections are refused)
//! while accepted connections finish their requests (graceful shutdown:
//! idle keep-alive connections close, busy ones close after their response).
//!
//! A connection learns of the stop through a oneshot of its own (`Conns`),
//! not by polling the shared stop signal on every wake-up, which would take
//! a lock per request.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::headers::Forwarded;
use crate::lean;
use crate::limits::{self, Activity};
use crate::original;
use crate::proxy::{self, ConnCtx};
use crate::shards;
use crate::state::Shared;
use crate::throttle::{Backoff, LogLimit, warn_limited};
use crate::tls;

/// Open connections, for draining: the receiver sees the channel close when
/// the last accept loop and connection have ended.
pub struct Drain {
    rx: mpsc::Receiver<()>,
}

impl Drain {
    /// Resolves when every connection accepted so far has ended.
    pub async fn wait(mut self) {
        let _ = self.rx.recv().await;
    }
}

/// What the accept loops and connections share; the last one to end drops
/// the drain sender.
struct Server {
    shared: Arc<Shared>,
    builder: auto::Builder<TokioExecutor>,
    permits: Arc<Semaphore>,
    conns: Arc<Conns>,
    /// Where connections are served; none: the current runtime.
    shards: Vec<Handle>,
    /// Open connections per shard.
    load: Box<[AtomicUsize]>,
    /// HTTPS on the router's port; none: the CA could not be loaded.
    tls: Option<tls::Tls>,
    _drain: mpsc::Sender<()>,
}

/// Starts an accept loop per listener on the current runtime, serving on
/// `shards` (on the current runtime too if there are none); the returned
/// handle waits for the connections to finish after [`Shared::stop`].
pub fn start(listeners: Vec<TcpListener>, shared: &Arc<Shared>, shards: &[Handle]) -> io::Result<Drain> {
    let (drain, rx) = mpsc::channel(1);
    let conns = Arc::new(Conns::default());
    let server = Arc::new(Server {
        shared: shared.clone(),
        builder: limits::http_builder(&shared.config.limits),
        permits: Arc::new(Semaphore::new(limits::connection_budget(shared.config.limits.max_connections))),
        conns: conns.clone(),
        shards: shards.to_vec(),
        load: (0..shards.len().max(1)).map(|_| AtomicUsize::new(0)).collect(),
        tls: tls::Tls::new(shared),
        _drain: drain,
    });
    let stopping = shared.clone();
    tokio::spawn(async move {
        stopping.stopped().await;
        conns.stop_all();
    });
    for l in listeners {
        tokio::spawn(accept_loop(l, server.clone(), None));
    }
    let srv = server.clone();
    let serve_original =
        move |l: TcpListener, port: u16| tokio::spawn(accept_loop(l, srv.clone(), Some(port))).abort_handle();
    tokio::spawn(original::run(shared.clone(), serve_original));
    Ok(Drain { rx })
}

/// One line per minute at most for failed accepts (out of descriptors, they
/// fail on every call).
static ACCEPT_FAILED: LogLimit = LogLimit::new(std::time::Duration::from_secs(60));

/// Accepts on one listener: the router's port, or an app's `original` port.
async fn accept_loop(listener: TcpListener, server: Arc<Server>, original: Option<u16>) {
    let shared = &server.shared;
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.stopped() => return,
        };
        // Registered with this runtime by `accept`: moved to its shard's.
        let (stream, peer) = match accepted.and_then(|(s, peer)| Ok((s.into_std()?, peer))) {
            Ok(a) => a,
            Err(e) => {
                warn_limited!(ACCEPT_FAILED, error = %e, "accept failed; retrying with growing pauses");
                tokio::select! {
                    _ = backoff.pause() => continue,
                    _ = shared.stopped() => return,
                }
            }
        };
        backoff.reset();
        // At the limit, this connection waits for a slot and nothing more is
        // accepted meanwhile: the rest wait in the kernel's backlog.
        let permit = tokio::select! {
            p = server.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shared.stopped() => return,
        };
        hand_off(&server, stream, peer, permit, original);
    }
}

/// Serves a connection on the shard [`shards::pick`] chooses.
fn hand_off(
    server: &Arc<Server>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    original: Option<u16>,
) {
    let shared = &server.shared;
    let i = shards::pick(&server.load);
    // Counted from here, and until the task ends or is dropped unrun.
    let load = Load::new(server.clone(), i);
    let local = stream.local_addr().ok();
    let forwarded = Forwarded::new(peer, local, local.map_or(shared.port, |a| a.port()));
    let srv = server.clone();
    let task = async move {
        let _load = load;
        match TcpStream::from_std(stream) {
            Ok(stream) => serve_conn(stream, forwarded, permit, &srv, original).await,
            Err(e) => tracing::warn!(error = %e, "cannot serve a connection"),
        }
    }
    .instrument(tracing::debug_span!("conn", %peer));
    match server.shards.get(i) {
        Some(shard) => drop(shard.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

/// A connection counted in its shard's load while it lives.
struct Load(Arc<Server>, usize);

impl Load {
    fn new(server: Arc<Server>, shard: usize) -> Load {
        server.load[shard].fetch_add(1, Ordering::Relaxed);
        Load(server, shard)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.load[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a connection on the lean path (see `lean`), then, if it needs
/// more, on the general one: hyper, HTTP/1.1 or h2c. On an original port,
/// what is not HTTP is tunnelled to the port's holder (see `original`).
async fn serve_conn(
    stream: TcpStream,
    forwarded: Forwarded,
    permit: OwnedSemaphorePermit,
    server: &Server,
    original: Option<u16>,
) {
    let accepted = tokio::time::Instant::now();
    let _ = stream.set_nodelay(true);
    let shared = &server.shared;
    let limit = shared.config.limits.header_read_timeout;
    let stream = match original {
        Some(port) => match original::admit(stream, port, shared).await {
            Some(http) => http,
            None => return,
        },
        None => match limits::first_byte(&stream, limit).await {
            None => return tracing::debug!("closed: nothing sent"),
            Some(tls::HANDSHAKE) if server.tls.is_some() => {
                return serve_tls(stream, forwarded, permit, server).await;
            }
            Some(_) => stream,
        },
    };
    serve_http1_first(stream, accepted, forwarded, permit, server, original).await;
}

/// The lean path first (plain HTTP/1.1 requests), then, from the first
/// request it does not serve, hyper.
async fn serve_http1_first<S: lean::ClientIo>(
    stream: S,
    accepted: tokio::time::Instant,
    forwarded: Forwarded,
    permit: OwnedSemaphorePermit,
    server: &Server,
    original: Option<u16>,
) {
    let shared = &server.shared;
    let (_registered, mut stop) = Registered::new(&server.conns);
    let ended = lean::serve(stream, accepted, shared, &forwarded, &mut stop, original).await;
    let (stream, stopping, idle_since) = match ended {
        lean::Ended::Closed => return,
        lean::Ended::General { stream, stopping, idle_since } => (stream, stopping, idle_since),
    };
    let activity = Activity::idle_since(idle_since);
    let cx = Arc::new(ConnCtx { shared: shared.clone(), forwarded, activity, original, _permit: Some(permit) });
    serve_hyper(stream, cx, server, stop, stopping).await;
}

/// Serves `io` on hyper (HTTP/1.1, h2 or h2c) until it ends, the router
/// stops (at once if the lean path saw the stop: `stopping`) or it idles
/// past the header timeout.
async fn serve_hyper<I>(io: I, cx: Arc<ConnCtx>, server: &Server, stop: oneshot::Receiver<()>, stopping: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limit = cx.shared.config.limits.header_read_timeout;
    let svc_cx = cx.clone();
    let service = service_fn(move |req| proxy::handle(req, svc_cx.clone()));
    let conn = server.builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        // A stop the lean path took already applies at once (after hyper
        // has read the request in hand: `biased` polls it first).
        _ = async { if !stopping { let _ = stop.await; } } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = limits::idle_limit(&cx.activity, limit) => {
            return tracing::debug!("closed: no request head within the header timeout");
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Serves a TLS connection, its requests marked `X-Forwarded-Proto: https`:
/// h2 (by ALPN) on hyper, HTTP/1.1 on the lean path first, as plain HTTP.
async fn serve_tls(stream: TcpStream, forwarded: Forwarded, permit: OwnedSemaphorePermit, server: &Server) {
    let Some(tls) = &server.tls else { return };
    let shared = &server.shared;
    let limit = shared.config.limits.header_read_timeout;
    let stream = match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => return tracing::debug!("closed: TLS handshake too slow"),
    };
    let forwarded = forwarded.over_tls();
    let now = tokio::time::Instant::now();
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return serve_http1_first(stream, now, forwarded, permit, server, None).await;
    }
    let (_registered, stop) = Registered::new(&server.conns);
    let activity = Activity::idle_since(now);
    let cx = Arc::new(ConnCtx { shared: shared.clone(), forwarded, activity, original: None, _permit: Some(permit) });
    serve_hyper(stream, cx, server, stop, false).await;
}

/// The stop signals of open connections.
#[derive(Default)]
struct Conns {
    inner: Mutex<ConnsInner>,
}

#[derive(Default)]
struct ConnsInner {
    stopping: bool,
    next: u64,
    open: HashMap<u64, oneshot::Sender<()>>,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signals every open connection, and any registered later, to stop.
    fn stop_all(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        for (_, tx) in inner.open.drain() {
            let _ = tx.send(());
        }
    }
}

/// A connection's place in [`Conns`], left when dropped.
struct Registered<'a> {
    conns: &'a Conns,
    id: u64,
}

impl<'a> Registered<'a> {
    /// The receiver resolves on stop (at once if the router is stopping already).
    fn new(conns: &'a Conns) -> (Registered<'a>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut inner = conns.lock();
        let id = inner.next;
        inner.next += 1;
        if !inner.stopping {
            inner.open.insert(id, tx);
        }
        (Registered { conns, id }, rx)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.conns.lock().open.remove(&self.id);
    }
}
