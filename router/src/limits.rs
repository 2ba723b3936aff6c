//! What one client may cost: the HTTP server settings that bound header size
//! (431 beyond), header read time (slowloris connections are closed), and
//! the open-connection count; plus the process's file-descriptor limit,
//! raised so thousands of WebSockets fit.
//!
//! The header read time is kept here rather than by hyper, whose timer is
//! armed and disarmed on every request (an allocation and two timer-wheel
//! updates each): a connection is idle from the end of its last response,
//! and one timer per connection, re-armed at most once per timeout period,
//! closes it when no request head has arrived within the limit since.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::Limits;

/// hyper's smallest read buffer.
const MIN_BUF: usize = 8192;

/// The client-facing HTTP/1.1 + h2 server builder with `limits` applied
/// (h2 with extended CONNECT, for WebSockets: see `connect`).
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None::<Duration>)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .keep_alive(true);
    let list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(list)
        .keep_alive_interval(Duration::from_secs(30))
        .enable_connect_protocol();
    b
}

/// Requests in flight on one client connection, and when the last ended.
#[derive(Debug)]
pub struct Activity {
    since: Instant,
    busy: AtomicU32,
    /// Milliseconds after `since` at which the last response ended.
    last_ms: AtomicU64,
    /// HTTP/2: idle streams are not this limit's business.
    h2: AtomicBool,
}

/// One request in flight; dropped when its response has been sent (or abandoned).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    /// A connection that has had no request in flight since `since`.
    pub fn idle_since(since: Instant) -> Arc<Activity> {
        let a = Activity { since, busy: AtomicU32::new(0), last_ms: AtomicU64::new(0), h2: AtomicBool::new(false) };
        Arc::new(a)
    }

    /// A request head has arrived.
    pub fn begin(self: &Arc<Activity>, h2: bool) -> Busy {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.store(ms, Ordering::SeqCst);
        a.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves when an HTTP/1 connection has had no request in flight for
/// `limit`: nothing sent since it was accepted, a head trickled too slowly,
/// or an idle keep-alive connection. Never for HTTP/2.
pub async fn idle_limit(a: &Activity, limit: Duration) {
    let mut deadline = a.since + limit;
    loop {
        tokio::time::sleep_until(deadline).await;
        if a.h2.load(Ordering::Relaxed) {
            return std::future::pending().await;
        }
        let now = Instant::now();
        if a.busy.load(Ordering::SeqCst) > 0 {
            deadline = now + limit;
            continue;
        }
        let idle_from = a.since + Duration::from_millis(a.last_ms.load(Ordering::SeqCst));
        if now < idle_from + limit {
            deadline = idle_from + limit;
            continue;
        }
        return;
    }
}

/// Waits for a new connection's first byte, at most `timeout`: a client that
/// connects and says nothing is closed like one that sends headers too slowly.
pub async fn first_byte(stream: &TcpStream, timeout: Duration) -> Option<u8> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut byte)).await {
        Ok(Ok(n)) if n > 0 => Some(byte[0]),
        _ => None,
    }
}

/// How many client connections may be open at once: at most `max`, and no
/// more than the open-files limit allows when each connection is counted
/// with the app connection it uses (a WebSocket tunnel holds both), after a
/// reserve for everything else (the management API, pooled idle app
/// connections, pid watches, the log, scans). At the limit new connections
/// wait in the listen backlog instead of failing `accept` with `EMFILE`, so
/// `agentfs ps` and the API keep answering.
pub fn connection_budget(max: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let soft = soft.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    budget_for(soft, max)
}

fn budget_for(open_files: usize, max: usize) -> usize {
    let reserve = 64 + open_files / 16;
    (open_files.saturating_sub(reserve) / 2).clamp(1, max.max(1))
}

/// Raises the soft open-files limit to the hard one (each tunnel holds two).
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(error = %e, "cannot raise the open-files limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::budget_for;

    #[test]
    fn budget_leaves_a_reserve_and_counts_two_descriptors_per_connection() {
        assert_eq!(budget_for(256, 16_384), 88);
        assert_eq!(budget_for(20_000, 16_384), 9_343);
        assert_eq!(budget_for(1 << 20, 16_384), 16_384);
        assert_eq!(budget_for(10, 16_384), 1, "never zero: one connection at a time still works");
        assert_eq!(budget_for(256, 10), 10);
    }
}
