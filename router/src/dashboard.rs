//! The dashboard at `http://localhost:<port>/` and
//! `http://agentfs.localhost:<port>/`: live routes as a page, and read-only
//! JSON at `/api/routes`. It changes nothing; the management API does.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::answers::{Answer, Format, STYLE, escape, routes_html};
use crate::body::{Body, full};
use crate::state::Shared;
use crate::table::Table;

/// Answers a request for the dashboard host.
pub fn serve<B>(req: &Request<B>, table: &Table, shared: &Shared) -> Response<Body> {
    let fmt = Format::of(req.headers());
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let message = "the dashboard is read-only; use the agentfs CLI to change routes".to_owned();
        return Answer { status: StatusCode::METHOD_NOT_ALLOWED, title: "method not allowed", message, routes: None }
            .render(fmt);
    }
    match req.uri().path() {
        "/api/routes" => json(table, shared),
        "/" if fmt == Format::Json => json(table, shared),
        "/" => page(table, shared),
        p => {
            let message = format!("the dashboard has no page {p}; try / or /api/routes");
            Answer { status: StatusCode::NOT_FOUND, title: "not found", message, routes: None }.render(fmt)
        }
    }
}

fn json(table: &Table, shared: &Shared) -> Response<Body> {
    let bytes = serde_json::to_vec(&shared.routes_view(table)).unwrap_or_default();
    respond(bytes, "application/json")
}

fn page(table: &Table, shared: &Shared) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>\
         <title>agentfs</title>{STYLE}</head><body><h1>agentfs router</h1>\
         <p>Port {port} · pid {pid} · listening on {addrs} · <a href=\"/api/routes\">/api/routes</a></p>{routes}{originals}{starting}\
         </body></html>\n",
        port = shared.port,
        pid = std::process::id(),
        addrs = escape(&shared.listening.join(", ")),
        routes = routes_html(&shared.routes_view(table)),
        starting = starting_html(table),
        originals = originals_html(shared, table),
    );
    respond(html.into_bytes(), "text/html; charset=utf-8")
}

fn starting_html(table: &Table) -> String {
    let s = &table.view().starting;
    if s.is_empty() {
        return String::new();
    }
    let items: Vec<String> = s
        .iter()
        .map(|w| format!("<li>{} ({}) · wrapper pid {}</li>", escape(&w.app), escape(&w.instance), w.wrapper_pid))
        .collect();
    format!("<h2>Starting</h2><ul>{}</ul>", items.join(""))
}

/// `localhost:5173 → main.shop` per original port, or why it is not mirrored.
fn originals_html(shared: &Shared, table: &Table) -> String {
    let ports = shared.originals.view(table);
    if ports.is_empty() {
        return String::new();
    }
    let items: Vec<String> = ports
        .iter()
        .map(|o| match &o.reason {
            None => format!("<li>localhost:{} → {}</li>", o.port, escape(&o.answers)),
            Some(why) => format!("<li>localhost:{} not mirrored ({})</li>", o.port, escape(why)),
        })
        .collect();
    format!("<h2>Original ports</h2><ul>{}</ul>", items.join(""))
}

fn respond(bytes: Vec<u8>, ctype: &'static str) -> Response<Body> {
    let mut res = Response::new(full(bytes));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
