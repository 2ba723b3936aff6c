//! A byte stream to an app: a Unix socket (discovered instances, static
//! socket routes) or TCP (static `host:port` routes, the PORT fallback of
//! programs that cannot take the shim). Both request paths connect through
//! here: the general one runs hyper's client over it, the lean one writes
//! and reads it directly.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use agentfs_registry::Target;
use agentfs_registry::sunpath::SockPath;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Why a new connection to an upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there (ECONNREFUSED) or the socket file is gone.
    #[error("{}", gone_words(.0))]
    Gone(io::Error),
    /// The app's listen queue stayed full (see [`BUSY_WAIT`]).
    #[error("its listen queue stayed full: {0}")]
    Busy(io::Error),
    #[error("{0}")]
    Io(io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(hyper::Error),
}

/// A vanished listener in words, not an OS error code (pages show this).
fn gone_words(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => "the socket file is gone (the app exited or closed it)",
        _ => "nothing listens there (connection refused): the app exited or stopped listening",
    }
}

impl ConnectError {
    fn from_io(e: io::Error) -> ConnectError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ConnectError::Gone(e),
            io::ErrorKind::WouldBlock => ConnectError::Busy(e),
            _ => ConnectError::Io(e),
        }
    }

    /// Whether trying again soon may succeed: a Unix listener whose accept
    /// queue is full refuses a connect at once — `EAGAIN` on Linux,
    /// `ECONNREFUSED` on macOS (there only while the listening process lives;
    /// on Linux `ECONNREFUSED` means nothing listens at all).
    pub fn is_busy(&self, listener_alive: impl FnOnce() -> bool) -> bool {
        match self {
            ConnectError::Busy(_) => true,
            ConnectError::Gone(e) => {
                cfg!(target_vendor = "apple") && e.kind() == io::ErrorKind::ConnectionRefused && listener_alive()
            }
            _ => false,
        }
    }
}

/// How long a connect to a busy Unix listener is retried: where TCP would
/// keep the connection in the SYN queue or retransmit the SYN (after 1 s,
/// then 3 s), a Unix socket refuses, so the router waits instead.
pub const BUSY_WAIT: Duration = Duration::from_secs(3);
/// First pause between two tries; doubled up to [`BUSY_PAUSE_MAX`].
const BUSY_PAUSE: Duration = Duration::from_millis(1);
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(50);

/// Connects to `target`, trying again with short, growing pauses for up to
/// [`BUSY_WAIT`] while the listener is busy (see [`ConnectError::is_busy`]).
pub async fn connect_patiently(target: &Target, listener_alive: impl Fn() -> bool) -> Result<AppStream, ConnectError> {
    let first = connect(target).await;
    match &first {
        Err(e) if e.is_busy(&listener_alive) => {}
        _ => return first,
    }
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    let mut pause = BUSY_PAUSE;
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(BUSY_PAUSE_MAX);
        match connect(target).await {
            Err(e) if e.is_busy(&listener_alive) && tokio::time::Instant::now() < deadline => {}
            Err(ConnectError::Gone(e)) if cfg!(target_vendor = "apple") && listener_alive() => {
                return Err(ConnectError::Busy(e));
            }
            done => return done,
        }
    }
}

/// A connected stream to an app.
#[derive(Debug)]
pub enum AppStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// Whether a socket holds bytes not yet read, asked of the kernel (a
/// non-blocking peek), not of tokio's cached readiness, which can lag behind
/// bytes that arrived a moment ago.
pub fn has_unread(fd: impl std::os::fd::AsFd) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut byte = [0u8; 1];
    matches!(recv(fd, &mut byte[..], RecvFlags::PEEK | RecvFlags::DONTWAIT), Ok((n, _)) if n > 0)
}

impl AppStream {
    /// Resolves once the app has sent something (or closed).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            AppStream::Unix(s) => s.readable().await,
            AppStream::Tcp(s) => s.readable().await,
        }
    }

    /// Whether an idle stream is fit to carry a new request: nothing has
    /// arrived on it since its last response was read to the end — no close,
    /// and no bytes (an app that sent more than its response said, or wrote
    /// after it, would otherwise answer the next request with them).
    ///
    /// Asked of tokio's readiness, which the last read cleared and which the
    /// runtime's next look at the kernel's events sets again: no system call
    /// per request. As with nginx's and haproxy's idle upstream connections,
    /// bytes that arrive in the instant before that look are not seen here; a
    /// close is then caught by the retry on a fresh stream, stray bytes are
    /// what a broken app gets.
    pub fn is_clean(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match self {
            AppStream::Unix(s) => s.poll_read_ready(&mut cx),
            AppStream::Tcp(s) => s.poll_read_ready(&mut cx),
        };
        ready.is_pending()
    }
}

/// Connects to `target`.
pub async fn connect(target: &Target) -> Result<AppStream, ConnectError> {
    match target {
        Target::Unix(path) => {
            let sock = SockPath::new(path).map_err(ConnectError::from_io)?;
            let stream = UnixStream::connect(sock.as_path()).await.map_err(ConnectError::from_io)?;
            Ok(AppStream::Unix(stream))
        }
        Target::Tcp { host, port } => connect_tcp(host, *port).await.map(AppStream::Tcp),
    }
}

async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<std::net::SocketAddr> = if host == "localhost" {
        vec![([127, 0, 0, 1], port).into(), (std::net::Ipv6Addr::LOCALHOST, port).into()]
    } else {
        tokio::net::lookup_host((host, port)).await.map_err(ConnectError::Io)?.collect()
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(ConnectError::from_io(last))
}

impl AsyncRead for AppStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            AppStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for AppStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            AppStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AppStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Unix(s) => Pin::new(s).poll_flush(cx),
            AppStream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            AppStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
