//! The management API on `router.sock` (HTTP/1.1 + JSON, mode 0600): what
//! the CLI uses to read status and routes, edit static routes, ask for a
//! rescan and stop the router. Peers of another uid are refused, even if the
//! socket's mode were loosened.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentfs_registry::Target;
use agentfs_registry::names::url;
use agentfs_registry::routes::{StaticRoutes, normalize_host};
use agentfs_registry::static_target;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};

use crate::api::{ApiError, PutStatic, StaticView, Status};
use crate::error::RouterError;
use crate::state::Shared;
use crate::throttle::{Backoff, LogLimit, warn_limited};

const MAX_BODY: usize = 64 * 1024;

type Res = Response<Full<Bytes>>;

/// Binds `router.sock` (replacing a stale one: the caller holds the pidfile
/// lock, so no other router owns it) with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, RouterError> {
    let err = |source| RouterError::MgmtSocket { path: path.to_owned(), source };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let sock = agentfs_registry::sunpath::SockPath::new(path).map_err(err)?;
    let listener = UnixListener::bind(sock.as_path()).map_err(err)?;
    agentfs_registry::home::make_private(path).map_err(err)?;
    Ok(listener)
}

/// Management connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;

static ACCEPT_FAILED: LogLimit = LogLimit::new(Duration::from_secs(60));
static REFUSED: LogLimit = LogLimit::new(Duration::from_secs(60));

/// Serves the API until the router stops. A failing accept (out of file
/// descriptors) is retried with growing pauses, logged once a minute.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    let me = rustix::process::geteuid().as_raw();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Backoff::default();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shared.stopped() => return,
        };
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    warn_limited!(ACCEPT_FAILED, error = %e, "mgmt accept failed; retrying with growing pauses");
                    tokio::select! { _ = backoff.pause() => continue, _ = shared.stopped() => return }
                }
            },
            _ = shared.stopped() => return,
        };
        backoff.reset();
        let peer_uid = stream.peer_cred().map(|c| c.uid()).ok();
        let span = tracing::debug_span!("mgmt", ?peer_uid);
        let conn = serve_conn(stream, shared.clone(), peer_uid == Some(me), peer_uid);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                conn.await;
                drop(permit);
            },
            span,
        ));
    }
}

/// One client: a request head must arrive within the header timeout, also
/// between requests on a kept-alive connection, or it is closed.
async fn serve_conn(stream: UnixStream, shared: Arc<Shared>, allowed: bool, peer_uid: Option<u32>) {
    let idle = shared.config.limits.header_read_timeout;
    let service = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            if !allowed {
                warn_limited!(REFUSED, ?peer_uid, "refused a management client of another uid");
                let why = format!("peer uid {peer_uid:?} is not the router's uid; refused");
                return Ok::<_, std::convert::Infallible>(error(StatusCode::FORBIDDEN, why));
            }
            Ok(route(req, &shared).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(allowed)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "mgmt connection ended");
    }
}

async fn route(req: Request<Incoming>, shared: &Arc<Shared>) -> Res {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/status") => ok(&status(shared)),
        (Method::GET, "/v1/routes") => ok(&shared.routes_view(&shared.table())),
        (Method::POST, "/v1/rescan") => {
            shared.rescan().await;
            ok(&status(shared))
        }
        (Method::POST, "/v1/shutdown") => {
            shared.stop();
            json(StatusCode::ACCEPTED, &serde_json::json!({ "stopping": true, "pid": std::process::id() }))
        }
        (m, p) if p.starts_with("/v1/static/") => {
            let host = &p["/v1/static/".len()..];
            match m {
                Method::PUT => put_static(req, host, shared).await,
                Method::DELETE => delete_static(host, shared).await,
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "use PUT or DELETE on /v1/static/<host>".into()),
            }
        }
        (_, p) => error(StatusCode::NOT_FOUND, format!("no API endpoint {p}")),
    }
}

fn status(shared: &Shared) -> Status {
    let table = shared.table();
    let view = table.view();
    Status {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        port: shared.port,
        listening: shared.listening.clone(),
        sockets: match (shared.inherited, cfg!(target_vendor = "apple")) {
            (false, _) => "bound",
            (true, false) => "systemd",
            (true, true) => "launchd",
        }
        .into(),
        url: url("localhost", shared.port),
        home: shared.config.home.root().to_owned(),
        started_at_ms: shared.started_at_ms,
        listeners: table.listeners().count(),
        apps: view.apps.len(),
        static_routes: view.static_routes.len(),
        waiting_requests: shared.waiting.load(std::sync::atomic::Ordering::Relaxed),
        generation: table.generation,
    }
}

async fn put_static(req: Request<Incoming>, host: &str, shared: &Arc<Shared>) -> Res {
    let host = match normalize_host(host) {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad host {host:?}: {e}")),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")),
    };
    let put: PutStatic = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"target\": \"...\"}}: {e}")),
    };
    let target: Target = match put.target.parse() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(e) = static_target::check_new(&shared.config.home, &target, put.allow_remote) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let view = StaticView { host: host.clone(), url: url(&host, shared.port), target: target.to_string() };
    match edit_routes(shared, move |r| r.routes.insert(host, target).is_some()).await {
        Ok(existed) => json(if existed { StatusCode::OK } else { StatusCode::CREATED }, &view),
        Err(res) => res,
    }
}

async fn delete_static(host: &str, shared: &Arc<Shared>) -> Res {
    let Ok(host) = normalize_host(host) else {
        return error(StatusCode::NOT_FOUND, format!("no static route for {host:?}"));
    };
    let h = host.clone();
    match edit_routes(shared, move |r| r.routes.remove(&h).is_some()).await {
        Ok(true) => json(StatusCode::OK, &serde_json::json!({ "removed": host })),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no static route for {host}")),
        Err(res) => res,
    }
}

/// Loads `routes.json`, applies `edit`, saves it (atomically, durably) if
/// `edit` changed something, then rescans so the table shows it. Returns
/// what `edit` returned.
async fn edit_routes(
    shared: &Arc<Shared>,
    edit: impl FnOnce(&mut StaticRoutes) -> bool + Send + 'static,
) -> Result<bool, Res> {
    let _guard = shared.routes_lock.lock().await;
    let home = shared.config.home.clone();
    let done = tokio::task::spawn_blocking(move || StaticRoutes::edit(&home, edit).map_err(|e| e.to_string())).await;
    match done {
        Ok(Ok(answer)) => {
            shared.rescan().await;
            Ok(answer)
        }
        Ok(Err(why)) => Err(error(StatusCode::CONFLICT, why)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn ok<T: serde::Serialize>(v: &T) -> Res {
    json(StatusCode::OK, v)
}

fn error(status: StatusCode, why: String) -> Res {
    json(status, &ApiError { error: why })
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Res {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    res
}
