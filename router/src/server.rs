//! Accepting clients: one accept loop per listener on each shard (see
//! `shards`; every loop accepts from the same socket, so an idle shard takes
//! the next connection), a span and a task per connection on the shard that
//! accepted it, HTTP/1.1 or h2c chosen by the client's first bytes. On stop
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
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::limits::{self, Activity};
use crate::proxy::{self, ConnCtx};
use crate::state::Shared;

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
    _drain: mpsc::Sender<()>,
}

/// Starts an accept loop per listener on each shard (the current runtime if
/// `shards` is empty); the returned handle waits for the connections to
/// finish after [`Shared::stop`].
pub fn start(listeners: Vec<TcpListener>, shared: &Arc<Shared>, shards: &[Handle]) -> io::Result<Drain> {
    let (drain, rx) = mpsc::channel(1);
    let conns = Arc::new(Conns::default());
    let server = Arc::new(Server {
        shared: shared.clone(),
        builder: limits::http_builder(&shared.config.limits),
        permits: Arc::new(Semaphore::new(shared.config.limits.max_connections)),
        conns: conns.clone(),
        _drain: drain,
    });
    let stopping = shared.clone();
    tokio::spawn(async move {
        stopping.stopped().await;
        conns.stop_all();
    });
    let here = [Handle::current()];
    let shards = if shards.is_empty() { &here[..] } else { shards };
    for l in listeners {
        let l = l.into_std()?;
        for shard in shards {
            let (l, server) = (l.try_clone()?, server.clone());
            shard.spawn(async move {
                match TcpListener::from_std(l) {
                    Ok(l) => accept_loop(l, server).await,
                    Err(e) => tracing::error!(error = %e, "cannot accept on a shard"),
                }
            });
        }
    }
    Ok(Drain { rx })
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    let shared = &server.shared;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.stopped() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        // At the limit, this connection waits for a slot and nothing more is
        // accepted meanwhile: the rest wait in the kernel's backlog.
        let permit = tokio::select! {
            p = server.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shared.stopped() => return,
        };
        let local_port = stream.local_addr().map_or(shared.port, |a| a.port());
        let cx = Arc::new(ConnCtx {
            shared: shared.clone(),
            forwarded: crate::headers::Forwarded::new(peer, local_port),
            activity: Activity::new(),
            _permit: Some(permit),
        });
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(serve_conn(stream, peer, cx, server.clone()).instrument(span));
    }
}

async fn serve_conn(stream: TcpStream, peer: SocketAddr, cx: Arc<ConnCtx>, server: Arc<Server>) {
    let _ = stream.set_nodelay(true);
    let limit = cx.shared.config.limits.header_read_timeout;
    if !limits::first_byte(&stream, limit).await {
        return tracing::debug!(%peer, "closed: nothing sent");
    }
    let svc_cx = cx.clone();
    let service = service_fn(move |req| proxy::handle(req, svc_cx.clone()));
    let conn = server.builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let (_registered, stop) = Registered::new(&server.conns);
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = stop => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = limits::idle_limit(&cx.activity, limit) => {
            return tracing::debug!(%peer, "closed: no request head within the header timeout");
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
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
