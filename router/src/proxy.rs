//! The request path, in named phases: parse the Host (`host`), resolve it
//! (`table`; waiting while an instance starts), connect (`pool`, trying
//! replicas in turn), then forward the request and stream the response, or
//! tunnel an upgrade (`tunnel`). Every failure becomes one of the router's
//! own answers; nothing here returns an error to hyper.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::answers::Format;
use crate::body::{self, Body, RequestBody};
use crate::connect;
use crate::headers;
use crate::host::{Host, HostError};
use crate::limits::Activity;
use crate::original::{self, OnPort};
use crate::pool::{self, ConnectError, Upstream};
use crate::replies;
use crate::state::Shared;
use crate::table::{Lookup, ReplicaSet, Table};
use crate::{dashboard, tunnel};

/// One client connection's context.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    /// This connection's `X-Forwarded-For` entry and `X-Forwarded-Port`.
    pub forwarded: headers::Forwarded,
    /// Requests in flight, for the header timeout.
    pub activity: Arc<Activity>,
    /// The app port this connection came in on, if not the router's (see `original`).
    pub original: Option<u16>,
    /// Held while the connection (or a tunnel made from it) lives.
    pub _permit: Option<OwnedSemaphorePermit>,
}

/// Serves one request from a client. The connection counts as busy until
/// the response has been sent.
pub async fn handle(req: Request<Incoming>, cx: Arc<ConnCtx>) -> Result<Response<Body>, Infallible> {
    let busy = cx.activity.begin(req.version() == Version::HTTP_2);
    let res = route(req, cx).await;
    Ok(res.map(|b| b.holding(busy)))
}

async fn route(req: Request<Incoming>, cx: Arc<ConnCtx>) -> Response<Body> {
    let resolved = match (cx.original, Host::of_request(&req)) {
        (_, Err(HostError::Duplicate)) => {
            return replies::host_error(HostError::Duplicate, Format::of(req.headers()), &cx.shared.dashboard_url());
        }
        (Some(port), _) => on_original_port(&cx.shared, port, &req),
        (None, Ok(host)) => resolve(&cx.shared, &host, &req).await,
        (None, Err(e)) => return replies::host_error(e, Format::of(req.headers()), &cx.shared.dashboard_url()),
    };
    let set = match resolved {
        Resolved::Set(set) => set,
        Resolved::Dashboard(table) => return dashboard::serve(&req, &table, &cx.shared, &cx.forwarded).await,
        Resolved::Answer(res) => return res,
    };
    forward(req, set, cx).await
}

/// Phase 2 on an app's original port (see `original::resolve`).
fn on_original_port(shared: &Shared, port: u16, req: &Request<Incoming>) -> Resolved {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header(header::HOST).or_else(|| req.uri().authority().map(|a| a.as_str())).unwrap_or("");
    let table = shared.table();
    match original::resolve(&table, port, host, header(header::ORIGIN), header(header::REFERER)) {
        OnPort::Route(set) => Resolved::Set(set.clone()),
        OnPort::Error(e) => {
            Resolved::Answer(replies::host_error(e, Format::of(req.headers()), &shared.dashboard_url()))
        }
        OnPort::Unknown => {
            let fmt = Format::of(req.headers());
            Resolved::Answer(replies::unknown_on_original_port(host, port, fmt, &shared.dashboard_url()))
        }
    }
}

enum Resolved {
    Set(Arc<ReplicaSet>),
    Dashboard(Arc<Table>),
    Answer(Response<Body>),
}

enum Step {
    Done(Resolved),
    Wait { app: String, instance: Option<String>, wrapper_pid: u32 },
}

/// Phase 2: the route. The waiting is boxed: the common case keeps the
/// request's future small (it is moved into place once per request).
async fn resolve<B>(shared: &Shared, host: &Host<'_>, req: &Request<B>) -> Resolved {
    match lookup(shared, host, req) {
        Step::Done(r) => r,
        Step::Wait { .. } => Box::pin(wait_for_start(shared, host, req)).await,
    }
}

fn lookup<B>(shared: &Shared, host: &Host<'_>, req: &Request<B>) -> Step {
    let table = shared.table();
    match table.resolve(host) {
        Lookup::Route(set) => Step::Done(Resolved::Set(set.clone())),
        Lookup::Dashboard => Step::Done(Resolved::Dashboard(arc_swap::Guard::into_inner(table))),
        Lookup::Unknown => {
            let routes = shared.routes_view(&table);
            let fmt = Format::of(req.headers());
            Step::Done(Resolved::Answer(replies::not_found(host, &routes, fmt, &shared.dashboard_url())))
        }
        Lookup::Crashed(w, down, crash) => {
            let who = format!("{} ({})", w.app, w.instance);
            let fmt = Format::of(req.headers());
            Step::Done(Resolved::Answer(crate::crashes::answer(&who, down, crash, fmt, &shared.dashboard_url())))
        }
        Lookup::Starting(w) => Step::Wait {
            app: w.app.to_string(),
            instance: host.app_ref().and_then(|r| r.instance.map(str::to_owned)),
            wrapper_pid: w.wrapper_pid,
        },
    }
}

/// The route, waiting up to `start_wait` while a wrapper runs but its app
/// has not listened yet.
async fn wait_for_start<B>(shared: &Shared, host: &Host<'_>, req: &Request<B>) -> Resolved {
    let mut changes: Option<(tokio::sync::watch::Receiver<u64>, Waiting<'_>)> = None;
    // A browser gets the waiting page (which reloads itself) soon; other clients wait for the app.
    let wait = match Format::of(req.headers()) {
        Format::Html => shared.config.start_wait.min(BROWSER_START_WAIT),
        _ => shared.config.start_wait,
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let step = lookup(shared, host, req);
        let (app, instance, wrapper_pid) = match step {
            Step::Done(r) => return r,
            Step::Wait { app, instance, wrapper_pid } => (app, instance, wrapper_pid),
        };
        let Some((rx, _)) = changes.as_mut() else {
            changes = Some((shared.subscribe(), Waiting::new(shared)));
            continue;
        };
        let give_up = tokio::select! {
            r = rx.changed() => r.is_err(),
            _ = tokio::time::sleep_until(deadline) => true,
            _ = shared.stopped() => true,
        };
        if give_up {
            let who = instance.map_or_else(|| app.clone(), |i| format!("{app} ({i})"));
            let fmt = Format::of(req.headers());
            return Resolved::Answer(replies::starting(&who, wrapper_pid, fmt, &shared.dashboard_url()));
        }
    }
}

/// How long a page load waits for a starting app before it gets the 503 page that reloads itself.
const BROWSER_START_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Counts a request in [`Shared::waiting`] while it lives.
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Waiting<'a> {
        shared.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Phases 3 and 4: connect to a replica and forward.
async fn forward(mut req: Request<Incoming>, mut set: Arc<ReplicaSet>, cx: Arc<ConnCtx>) -> Response<Body> {
    let hops = headers::hops(req.headers());
    if hops >= headers::MAX_HOPS {
        return replies::loop_detected(&set, hops, Format::of(req.headers()), &cx.shared.dashboard_url());
    }
    let h2_websocket = connect::is_websocket(&req);
    if req.method() == Method::CONNECT && !h2_websocket {
        return replies::connect_not_allowed(Format::of(req.headers()), &cx.shared.dashboard_url());
    }
    // Only needed if every replica fails: the request is gone by then.
    let fmt = Format::of(req.headers());
    let upgrade = h2_websocket || (req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers()));
    let client_upgrade = upgrade.then(|| ClientUpgrade { on: hyper::upgrade::on(&mut req), h2: h2_websocket });
    if h2_websocket {
        connect::to_http1_handshake(&mut req);
    }
    prepare(&mut req, &cx, hops, upgrade);
    let (parts, body) = req.into_parts();
    let (body, client_fault) = RequestBody::new(body);
    let mut req = Request::from_parts(parts, body);
    let mut again = 0;
    // The first round's failures name what went wrong (a later round finds the refused sockets swept).
    let mut first: Option<Vec<(String, String)>> = None;
    loop {
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut vanished = true;
        for up in set.candidates() {
            match send(up, req).await {
                Ok(sent) => return respond(sent, client_upgrade, cx, &set, fmt),
                Err(SendError::Connect(e, back)) => {
                    if let (ConnectError::Gone(_), Some(l)) = (&e, &up.listener) {
                        crate::discovery::sweep_refused(&cx.shared, l);
                    }
                    vanished &= matches!(e, ConnectError::Gone(_));
                    failures.push((up.target.to_string(), e.to_string()));
                    req = back;
                }
                Err(SendError::Failed(_)) if client_fault.happened() => {
                    return replies::bad_request_body(fmt, &cx.shared.dashboard_url());
                }
                Err(SendError::Failed(e)) => {
                    failures.push((up.target.to_string(), format!("the app failed to answer: {e}")));
                    return replies::bad_gateway(&set, &failures, fmt, &cx.shared.dashboard_url());
                }
            }
        }
        let failures = first.get_or_insert(failures);
        if !vanished || failures.is_empty() || again == RESOLVE_AGAIN || cx.original.is_some() {
            return replies::bad_gateway(&set, failures, fmt, &cx.shared.dashboard_url());
        }
        set = match Box::pin(resolve_again(&cx.shared, &req)).await {
            Some(Resolved::Set(s)) => s,
            Some(Resolved::Answer(res)) => return res,
            Some(Resolved::Dashboard(_)) | None => {
                return replies::bad_gateway(&set, failures, fmt, &cx.shared.dashboard_url());
            }
        };
        again += 1;
    }
}

/// How many times a request whose every replica vanished is routed again.
const RESOLVE_AGAIN: usize = 3;

/// Every replica's socket was gone (refused or removed: its app just
/// stopped, or is being restarted): once the table has caught up, the host
/// is resolved again — the instance may be restarting (the request is held
/// as for a start), listen elsewhere or have crashed — and nothing was sent
/// to any app, so nothing is sent twice.
/// `None` when the host is now unknown: the 502 naming the sockets tried says more than a 404.
async fn resolve_again<B>(shared: &Shared, req: &Request<B>) -> Option<Resolved> {
    shared.rescan().await;
    let host = Host::of_request(req).ok()?;
    if matches!(shared.table().resolve(&host), Lookup::Unknown) {
        return None;
    }
    Some(resolve(shared, &host, req).await)
}

/// Rewrites a client request for the app: origin-form URI, HTTP/1.1, a Host
/// header (from the authority for h2 clients), hop-by-hop headers out,
/// `X-Forwarded-*` and the hop count in.
fn prepare(req: &mut Request<Incoming>, cx: &ConnCtx, hops: u32, upgrade: bool) {
    let host_value = match req.headers().get(header::HOST) {
        Some(h) => h.clone(),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or(HeaderValue::from_static("localhost")),
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    headers::strip_hop_by_hop(h, upgrade);
    headers::set_forwarded(h, &cx.forwarded, &host_value, hops);
    h.insert(header::HOST, host_value);
}

#[allow(clippy::large_enum_variant)] // built once per attempt, never stored
enum SendError {
    /// No connection could be made; the request comes back for the next replica.
    Connect(ConnectError, Request<RequestBody>),
    /// The request was (partly) sent and failed: it cannot be replayed.
    Failed(hyper::Error),
}

/// Sends on a pooled connection; if that connection turns out closed before
/// the request left, once more on a fresh one.
/// A response and the connection to give back once its body has ended.
type Sent = (Response<Incoming>, Option<(Arc<Upstream>, pool::Sender)>);

async fn send(up: &Arc<Upstream>, mut req: Request<RequestBody>) -> Result<Sent, SendError> {
    let mut fresh = false;
    loop {
        // Connecting is boxed: the pooled case keeps this future small.
        let tx = match (!fresh).then(|| up.pop_idle()).flatten() {
            Some(tx) => Ok(tx),
            None => Box::pin(up.connect()).await,
        };
        let mut tx = match tx {
            Ok(tx) => tx,
            Err(e) => return Err(SendError::Connect(e, req)),
        };
        match tx.try_send_request(req).await {
            Ok(res) => {
                let back = (res.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| (up.clone(), tx));
                return Ok((res, back));
            }
            Err(mut e) => match e.take_message() {
                Some(back) if !fresh => {
                    req = back;
                    fresh = true;
                }
                _ => return Err(SendError::Failed(e.into_error())),
            },
        }
    }
}

/// The client side of an upgrade: an HTTP/1.1 `Upgrade`, or (`h2`) an
/// extended CONNECT that is answered 200 instead of 101.
struct ClientUpgrade {
    on: hyper::upgrade::OnUpgrade,
    h2: bool,
}

fn respond(
    (mut res, conn): Sent,
    client_upgrade: Option<ClientUpgrade>,
    cx: Arc<ConnCtx>,
    set: &ReplicaSet,
    fmt: Format,
) -> Response<Body> {
    let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    let on_original_port = cx.original.is_some();
    if switching {
        let Some(client) = client_upgrade else {
            let failure = [(set.what.clone(), "the app switched protocols without being asked".to_owned())];
            return replies::bad_gateway(set, &failure, fmt, &cx.shared.dashboard_url());
        };
        let app = hyper::upgrade::on(&mut res);
        tokio::spawn(tunnel::run(client.on, app, cx));
        if client.h2 {
            connect::to_h2_answer(&mut res);
        }
    }
    headers::strip_hop_by_hop(res.headers_mut(), switching);
    if on_original_port {
        if let Ok(v) = HeaderValue::from_str(&set.instance) {
            res.headers_mut().insert(headers::X_AGENTFS_INSTANCE, v);
        }
    }
    res.map(|b| body::stream(b, conn))
}
