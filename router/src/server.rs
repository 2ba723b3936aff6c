//! Accepting clients: one accept loop per listener on each shard (see
//! `shards`; every loop accepts from the same socket, so an idle shard takes
//! the next connection), a span and a task per connection on the shard that
//! accepted it, HTTP/1.1 or h2c chosen by the client's first bytes. On stop
//! the loops end and drop their listeners (new connections are refused)
//! while accepted connections finish their requests (graceful shutdown:
//! idle keep-alive connections close, busy ones close after their response).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use crate::proxy::{self, ConnCtx};
use crate::state::Shared;
use crate::{headers, limits};

/// Open connections, for draining: each holds a sender; the receiver sees
/// the channel close when the last one ends.
pub struct Drain {
    rx: mpsc::Receiver<()>,
}

impl Drain {
    /// Resolves when every connection accepted so far has ended.
    pub async fn wait(mut self) {
        let _ = self.rx.recv().await;
    }
}

type Watcher = mpsc::Sender<()>;

/// Starts an accept loop per listener on each shard (the current runtime if
/// `shards` is empty); the returned handle waits for the connections to
/// finish after [`Shared::stop`].
pub fn start(listeners: Vec<TcpListener>, shared: &Arc<Shared>, shards: &[Handle]) -> io::Result<Drain> {
    let (watcher, rx) = mpsc::channel(1);
    let builder = Arc::new(limits::http_builder(&shared.config.limits));
    let permits = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    let here = [Handle::current()];
    let shards = if shards.is_empty() { &here[..] } else { shards };
    for l in listeners {
        let l = l.into_std()?;
        for shard in shards {
            let (l, shared, builder, permits, watcher) =
                (l.try_clone()?, shared.clone(), builder.clone(), permits.clone(), watcher.clone());
            shard.spawn(async move {
                match TcpListener::from_std(l) {
                    Ok(l) => accept_loop(l, shared, builder, permits, watcher).await,
                    Err(e) => tracing::error!(error = %e, "cannot accept on a shard"),
                }
            });
        }
    }
    Ok(Drain { rx })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    permits: Arc<Semaphore>,
    watcher: Watcher,
) {
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
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shared.stopped() => return,
        };
        let local_port = stream.local_addr().map_or(shared.port, |a| a.port());
        let forwarded = headers::Forwarded::new(peer, local_port);
        let cx = Arc::new(ConnCtx { shared: shared.clone(), forwarded, _permit: Some(permit) });
        let span = tracing::debug_span!("conn", %peer);
        tokio::spawn(serve_conn(stream, peer, cx, builder.clone(), watcher.clone()).instrument(span));
    }
}

async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    cx: Arc<ConnCtx>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    if !limits::first_byte(&stream, cx.shared.config.limits.header_read_timeout).await {
        return tracing::debug!(%peer, "closed: nothing sent");
    }
    let svc_cx = cx.clone();
    let service = service_fn(move |req| proxy::handle(req, svc_cx.clone()));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = cx.shared.stopped() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
    drop(watcher);
}
