//! The dashboard at `http://localhost:<port>/` and
//! `http://agentfs.localhost:<port>/`: what runs, as a page that is whole
//! without JavaScript and, with it, live — `GET /api/events` (Server-Sent
//! Events) sends the cards again whenever they change (a route-table change
//! at once, a static route going up or down, a branch switch or new log
//! lines within [`RECHECK`]), and the page swaps in the changed cards only.
//! Log lines are shown to the router's own user only. Also the
//! read-only JSON at `/api/routes` and the favicon. It changes nothing but
//! by its stop buttons (`stopper`, which says who may); the management API
//! and the CLI do the rest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::answers::{Answer, Format};
use crate::body::{Body, full};
use crate::dashboard_view::{self, Content};
use crate::headers::Forwarded;
use crate::page::{FAVICON_SVG, Layout, escape};
use crate::state::Shared;
use crate::stopper;
use crate::table::Table;

/// How often the event stream re-checks what a table change does not tell.
const RECHECK: Duration = Duration::from_secs(2);
/// A comment this often, so a client that went away is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Answers a request for the dashboard host.
pub async fn serve<B>(req: &Request<B>, table: &Table, shared: &Arc<Shared>, conn: &Forwarded) -> Response<Body> {
    let fmt = Format::of(req.headers());
    let dash = shared.dashboard_url();
    if let Some(target) = req.uri().path().strip_prefix("/api/stop/").filter(|_| req.method() == Method::POST) {
        return stopper::serve(req.headers(), target, shared, conn);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let message = "the dashboard only reads (and stops instances, by POST /api/stop/<instance>.<app>); use the agentfs CLI to change routes".to_owned();
        return Answer::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", message, &dash).render(fmt);
    }
    match req.uri().path() {
        "/api/routes" => json(table, shared),
        "/api/events" => events(shared.clone(), Viewer::of(conn)),
        "/favicon.svg" | "/favicon.ico" => respond(FAVICON_SVG.as_bytes().to_vec(), "image/svg+xml"),
        "/" if fmt == Format::Json => json(table, shared),
        "/" => page(shared, content(shared, table, Viewer::of(conn)).await),
        p => {
            let message = format!("the dashboard has no page {p}");
            let next =
                "The dashboard is at `/`; its data is at `/api/routes` (JSON) and `/api/events` (a live stream).";
            Answer::new(StatusCode::NOT_FOUND, "not found", message, &dash).next(next).render(fmt)
        }
    }
}

fn json(table: &Table, shared: &Shared) -> Response<Body> {
    let bytes = serde_json::to_vec(&shared.routes_view(table)).unwrap_or_default();
    respond(bytes, "application/json")
}

/// Who looks: the router's own user sees the instances' last log lines.
#[derive(Clone, Copy)]
struct Viewer {
    own_user: bool,
}

impl Viewer {
    fn of(conn: &Forwarded) -> Viewer {
        Viewer { own_user: stopper::same_user(conn).is_ok() }
    }
}

/// The cards for `table`, built off the runtime's threads (they probe and read files).
async fn content(shared: &Shared, table: &Table, who: Viewer) -> Content {
    let view = shared.routes_view(table);
    let now = agentfs_registry::liveness::now_ms();
    let opts = dashboard_view::Opts {
        can_stop: stopper::available() && shared.token.is_some(),
        logs_of: who.own_user.then(|| shared.config.home.clone()),
    };
    tokio::task::spawn_blocking(move || dashboard_view::content(&view, now, &opts))
        .await
        .unwrap_or_else(|_| Content { summary: String::new(), cards: Vec::new() })
}

fn page(shared: &Shared, c: Content) -> Response<Body> {
    let cards: String = c.cards.iter().map(|c| c.html.as_str()).collect();
    let sockets = if shared.inherited { "passed by the system" } else { "bound by the router" };
    let main = format!(
        "<h1>Apps</h1><p id=summary class=muted aria-live=polite>{summary}</p><div id=cards>{cards}</div>\
         <details><summary>Router</summary><dl><dt>Port</dt><dd>{port}</dd><dt>Pid</dt><dd>{pid}</dd>\
         <dt>Listening</dt><dd>{addrs} ({sockets})</dd><dt>Data</dt><dd><a href=\"/api/routes\">/api/routes</a> · \
         <a href=\"/api/events\">/api/events</a></dd></dl></details>",
        summary = escape(&c.summary),
        port = shared.port,
        pid = std::process::id(),
        addrs = escape(&shared.listening.join(", ")),
    );
    let dash = shared.dashboard_url();
    let head = match shared.token.as_deref().filter(|_| stopper::available()) {
        Some(token) => format!("<meta name=agentfs-token content={token}>"),
        None => String::new(),
    };
    let html = Layout { title: "agentfs", dashboard: &dash, main, refresh: None, script: Some(SCRIPT), head }.render();
    respond(html.into_bytes(), "text/html; charset=utf-8")
}

/// The page's script: swap in changed cards by key and version, in order;
/// copy buttons.
const SCRIPT: &str = "document.documentElement.classList.add('js');\
const box=document.getElementById('cards'),sum=document.getElementById('summary');\
function apply(d){const have=new Map([...box.children].map(e=>[e.dataset.key,e]));let prev=null;\
for(const c of d.cards){let el=have.get(c.key);have.delete(c.key);\
if(!el||el.dataset.v!==c.v){const t=document.createElement('template');t.innerHTML=c.html;\
const n=t.content.firstElementChild;if(el)el.replaceWith(n);el=n;}\
const want=prev?prev.nextElementSibling:box.firstElementChild;if(want!==el)box.insertBefore(el,want);prev=el;}\
for(const e of have.values())e.remove();if(sum.textContent!==d.summary)sum.textContent=d.summary;}\
if(window.EventSource){const es=new EventSource('/api/events');es.onmessage=e=>{apply(JSON.parse(e.data));document.documentElement.dataset.live='1';};}\
box.addEventListener('click',e=>{const b=e.target.closest('button[data-copy]');if(!b||!navigator.clipboard)return;\
navigator.clipboard.writeText(b.dataset.copy).then(()=>{b.textContent='copied';setTimeout(()=>b.textContent='copy',1500);});});\
box.addEventListener('click',e=>{const b=e.target.closest('button[data-stop]');if(!b)return;\
const t=document.querySelector('meta[name=agentfs-token]');b.disabled=true;b.textContent='stopping';\
fetch('/api/stop/'+encodeURIComponent(b.dataset.stop),{method:'POST',headers:{'x-agentfs-token':t?t.content:''}})\
.then(r=>r.ok?null:r.text().then(x=>{throw new Error(x.split('\\n')[1]||r.status)}))\
.catch(err=>{b.disabled=false;b.textContent='stop failed';b.title=err.message;});});";

/// `GET /api/events`: `data: <Content as JSON>` now and on every change,
/// until the client goes or the router stops.
fn events(shared: Arc<Shared>, who: Viewer) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut changes = shared.subscribe();
        let mut last = String::new();
        let mut recheck = tokio::time::interval(RECHECK);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        if tx.send(Bytes::from_static(b"retry: 1000\n\n")).await.is_err() {
            return;
        }
        loop {
            let table = arc_swap::Guard::into_inner(shared.table());
            let json = serde_json::to_string(&content(&shared, &table, who).await).unwrap_or_default();
            if json != last && tx.send(Bytes::from(format!("data: {json}\n\n"))).await.is_err() {
                return;
            }
            last = json;
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = recheck.tick() => {}
                _ = heartbeat.tick() => if tx.send(Bytes::from_static(b": ping\n\n")).await.is_err() { return },
                _ = tx.closed() => return,
                _ = shared.stopped() => return,
            }
        }
    });
    let mut res = Response::new(crate::body::channel(rx));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

fn respond(bytes: Vec<u8>, ctype: &'static str) -> Response<Body> {
    let mut res = Response::new(full(bytes));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
