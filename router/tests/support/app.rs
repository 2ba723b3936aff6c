//! Fake apps: hyper HTTP/1.1 servers on Unix sockets in `run/`, announced by
//! a sidecar written after listen() with `agentfs_registry::record::write`,
//! as the shim does. Paths: `/` echoes the request as JSON, `/sse` streams
//! an event then waits for `release`, `/upload` counts body bytes, `/slow`
//! answers after `release`, `/ws` upgrades and echoes bytes.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentfs_registry::record::{self, Family, Sidecar, VERSION};
use agentfs_registry::{Home, Label, scan};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub type AppBody = BoxBody<Bytes, Infallible>;

/// What the test can see of and do to an app.
pub struct Ctl {
    pub tag: String,
    pub hits: AtomicUsize,
    /// Lets `/sse` finish and `/slow` answer.
    pub release: Notify,
    /// Signalled when `/slow` or `/sse` has received its request.
    pub got: Notify,
}

pub struct App {
    pub stem: String,
    pub sock: PathBuf,
    pub ctl: Arc<Ctl>,
    task: JoinHandle<()>,
}

impl App {
    /// Stops serving; the socket file stays (a crashed app). Returns once
    /// the socket refuses connections (the abort takes effect when the
    /// runtime next polls the task).
    pub fn kill(&self) {
        self.task.abort();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(&self.sock).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Spec<'a> {
    pub app: &'a str,
    pub instance: &'a str,
    pub port: u16,
    pub started_at_ms: u64,
    /// `Some((pid, n))`: a replica stem.
    pub replica: Option<(u32, u32)>,
    pub sidecar: bool,
    /// Use a short hashed stem (as for names too long for sun_path): without
    /// its sidecar such a socket has no identity and is never routed.
    pub hashed: bool,
}

impl<'a> Spec<'a> {
    pub fn new(app: &'a str, instance: &'a str, port: u16, started_at_ms: u64) -> Spec<'a> {
        Spec { app, instance, port, started_at_ms, replica: None, sidecar: true, hashed: false }
    }
}

/// Binds, listens, then writes the sidecar (pid = this process).
pub async fn start(home: &Home, spec: Spec<'_>) -> App {
    let run = home.run_dir();
    let mut name = agentfs_registry::SocketName::new(
        Label::parse(spec.app).unwrap(),
        Label::parse(spec.instance).unwrap(),
        spec.port,
    );
    if let Some((pid, n)) = spec.replica {
        name = name.with_replica(pid, n);
    }
    let stem = if spec.hashed { agentfs_registry::runfile::hashed_stem(&name.stem()) } else { name.stem_in(&run) };
    let sock = scan::socket_path(&run, &stem);
    let listener = UnixListener::bind(&sock).unwrap();
    let ctl =
        Arc::new(Ctl { tag: stem.clone(), hits: AtomicUsize::new(0), release: Notify::new(), got: Notify::new() });
    let task = tokio::spawn(serve(listener, ctl.clone()));
    if spec.sidecar {
        record::write(&scan::sidecar_path(&run, &stem), &sidecar(&spec, &sock)).unwrap();
    }
    App { stem, sock, ctl, task }
}

/// The same fake app on a Unix socket outside `run/`, with no sidecar (a
/// static route's target: those must be outside the agentfs home).
pub async fn start_unix(sock: &std::path::Path, tag: &str) -> App {
    let listener = UnixListener::bind(sock).unwrap();
    let ctl =
        Arc::new(Ctl { tag: tag.to_owned(), hits: AtomicUsize::new(0), release: Notify::new(), got: Notify::new() });
    let task = tokio::spawn(serve(listener, ctl.clone()));
    App { stem: tag.to_owned(), sock: sock.to_owned(), ctl, task }
}

/// The same fake app on a loopback TCP port (a static route's target).
pub async fn start_tcp(tag: &str) -> (u16, App) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctl =
        Arc::new(Ctl { tag: tag.to_owned(), hits: AtomicUsize::new(0), release: Notify::new(), got: Notify::new() });
    let c = ctl.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let ctl = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, ctl.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (port, App { stem: tag.to_owned(), sock: PathBuf::new(), ctl, task })
}

pub fn sidecar(spec: &Spec<'_>, sock: &std::path::Path) -> Sidecar {
    Sidecar {
        v: VERSION,
        app: Label::parse(spec.app).unwrap(),
        instance: Label::parse(spec.instance).unwrap(),
        port: spec.port,
        socket: Some(sock.to_owned()),
        tcp: None,
        pid: std::process::id(),
        wrapper_pid: None,
        family: Family::Ipv4,
        addr: "127.0.0.1".parse().unwrap(),
        cmd: vec!["fake-app".into()],
        cwd: "/".into(),
        started_at_ms: spec.started_at_ms,
    }
}

async fn serve(listener: UnixListener, ctl: Arc<Ctl>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let ctl = ctl.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, ctl.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn full(b: impl Into<Bytes>) -> AppBody {
    Full::new(b.into()).boxed()
}

async fn handle(req: Request<Incoming>, ctl: Arc<Ctl>) -> Result<Response<AppBody>, Infallible> {
    ctl.hits.fetch_add(1, Ordering::SeqCst);
    let res = match req.uri().path() {
        "/sse" => sse(ctl),
        "/upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(Ok(frame)) = body.frame().await {
                n += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Response::new(full(n.to_string()))
        }
        "/slow" => {
            ctl.got.notify_one();
            ctl.release.notified().await;
            Response::new(full("slow done"))
        }
        "/ws" => upgrade(req, ctl),
        _ => echo(&req, &ctl),
    };
    Ok(res)
}

fn echo(req: &Request<Incoming>, ctl: &Ctl) -> Response<AppBody> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let v = serde_json::json!({ "tag": ctl.tag, "method": req.method().as_str(), "uri": req.uri().to_string(), "headers": headers });
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "x-app-private")
        .header("x-app-private", "secret")
        .header("keep-alive", "timeout=5")
        .body(full(v.to_string()))
        .unwrap()
}

fn sse(ctl: Arc<Ctl>) -> Response<AppBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
        ctl.got.notify_one();
        ctl.release.notified().await;
        let _ = tx.send(Bytes::from_static(b"data: last\n\n")).await;
    });
    Response::builder().header("content-type", "text/event-stream").body(ChannelBody(rx).boxed()).unwrap()
}

/// A body whose chunks arrive through a channel, each sent as it comes.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut().0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn upgrade(mut req: Request<Incoming>, ctl: Arc<Ctl>) -> Response<AppBody> {
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        let _ = io.write_all(format!("hello from {}\n", ctl.tag).as_bytes()).await;
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(full(""))
        .unwrap()
}
