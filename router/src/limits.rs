//! What one client may cost: the HTTP server settings that bound header size
//! (431 beyond), header read time (slowloris connections are closed), and
//! the open-connection count; plus the process's file-descriptor limit,
//! raised so thousands of WebSockets fit.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::config::Limits;

/// hyper's smallest read buffer.
const MIN_BUF: usize = 8192;

/// The client-facing HTTP/1.1 + h2c server builder with `limits` applied.
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .keep_alive(true);
    let list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    b.http2().timer(TokioTimer::new()).max_header_list_size(list).keep_alive_interval(Duration::from_secs(30));
    b
}

/// Waits for a new connection's first byte, at most `timeout`: a client that
/// connects and says nothing is closed like one that sends headers too slowly.
pub async fn first_byte(stream: &TcpStream, timeout: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(timeout, stream.peek(&mut byte)).await, Ok(Ok(n)) if n > 0)
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
