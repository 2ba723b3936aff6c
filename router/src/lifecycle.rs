//! Start, run and stop: take the pidfile, bind the HTTP listeners and
//! `router.sock`, scan, serve; on a shutdown request stop accepting, drain
//! in-flight requests up to the drain timeout, remove `router.sock` and the
//! pidfile. [`run`] adds the runtimes (a shard per CPU for the connections,
//! see `shards`; the main thread for the rest) and the signals
//! (SIGTERM/SIGINT drain, SIGHUP rescans).

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Config;
use crate::error::RouterError;
use crate::shards::{self, Shards};
use crate::state::Shared;
use crate::{discovery, limits, listen, mgmt, pidfile, server};

/// Runs a router until `shutdown` resolves (or `POST /v1/shutdown`), then
/// drains in-flight requests for up to `config.drain_timeout` and returns.
/// Writes `router.pid` and `router.sock` and removes both on return. Does not
/// handle signals (see [`run`]).
/// Connections are served on the caller's runtime.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RouterError> {
    serve_with(config, shutdown, None, &[]).await
}

/// Blocking: starts a shard per CPU for the connections and serves until
/// SIGTERM or SIGINT (graceful drain, then `Ok`); SIGHUP rescans `run/`.
pub fn run(config: Config) -> Result<(), RouterError> {
    limits::raise_fd_limit();
    let shards = Shards::start(shards::default_count()).map_err(RouterError::Runtime)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RouterError::Runtime)?;
    let result = rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).map_err(RouterError::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(RouterError::Runtime)?;
        let hup = signal(SignalKind::hangup()).map_err(RouterError::Runtime)?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        };
        serve_with(config, shutdown, Some(hup), shards.handles()).await
    });
    shards.stop();
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

async fn serve_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut hup: Option<Signal>,
    shards: &[Handle],
) -> Result<(), RouterError> {
    config.home.ensure()?;
    let pid_lock = pidfile::acquire(&config.home)?;
    let bound = match listen::inherited(config.passed.take())? {
        Some(b) => b,
        None => listen::bind(config.http_port(), config.lan)?,
    };
    let mgmt_listener = mgmt::bind(&config.home.router_sock())?;
    let listening = bound.addrs.iter().map(ToString::to_string).collect();
    let shared = Shared::new(config, bound.port, (listening, bound.inherited));
    let discovery = discovery::start(shared.clone()).await;
    let connections = server::start(bound.listeners, &shared, shards).map_err(RouterError::Runtime)?;
    tokio::spawn(mgmt::serve(mgmt_listener, shared.clone()));
    tracing::info!(port = shared.port, addrs = ?shared.listening, "router listening");
    wait_for_stop(&shared, shutdown, &mut hup).await;
    shared.stop();
    let _ = std::fs::remove_file(shared.config.home.router_sock());
    drain(&shared, connections).await;
    drop(discovery);
    drop(pid_lock);
    Ok(())
}

async fn wait_for_stop(shared: &Arc<Shared>, shutdown: impl Future<Output = ()>, hup: &mut Option<Signal>) {
    tokio::pin!(shutdown);
    loop {
        let hup_recv = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = shared.stopped() => return,
            _ = hup_recv => {
                tracing::info!("SIGHUP: rescanning");
                shared.poke();
            }
        }
    }
}

async fn drain(shared: &Shared, drain: server::Drain) {
    let limit = shared.config.drain_timeout;
    match tokio::time::timeout(limit, drain.wait()).await {
        Ok(()) => tracing::info!("drained; stopped"),
        Err(_) => tracing::warn!(secs = limit.as_secs(), "drain timeout; closing remaining connections"),
    }
}
