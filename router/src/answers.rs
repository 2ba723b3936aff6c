//! The router's own answers — 400, 404, 421, 502, 503, 508 — each in the
//! form the client wants: HTML for browsers, JSON for `Accept:
//! application/json`, plain text otherwise. A 404 lists the live apps so a
//! person who mistyped a name sees the right one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::api::RoutesView;
use crate::body::{Body, full};
pub use crate::page::escape;
use crate::page::{Layout, prose};

/// How an answer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Text,
}

impl Format {
    /// JSON when asked for (and HTML is not), HTML for browsers, else text.
    pub fn of(headers: &HeaderMap) -> Format {
        headers.get_all(header::ACCEPT).iter().fold(Format::Text, |f, v| f.and_accept(v.as_bytes()))
    }

    /// The format after one more `Accept` value (HTML wins over JSON, JSON
    /// over text, whatever the order of the values).
    pub fn and_accept(self, value: &[u8]) -> Format {
        let has = |needle: &[u8]| value.windows(needle.len()).any(|w| w == needle);
        match self {
            Format::Html => Format::Html,
            _ if has(b"text/html") => Format::Html,
            _ if has(b"application/json") => Format::Json,
            f => f,
        }
    }
}

/// One of the router's own answers.
pub struct Answer<'a> {
    pub status: StatusCode,
    /// Short: "unknown host".
    pub title: &'static str,
    /// What happened and why, in one or more sentences.
    pub message: String,
    /// What to do about it (commands between backticks); pages only.
    pub next: Option<String>,
    /// Live apps to list (404).
    pub routes: Option<&'a RoutesView>,
    /// The dashboard's URL, linked from the page.
    pub dashboard: String,
    /// Reload the page after this many seconds (the 503 waiting page).
    pub refresh: Option<u32>,
}

impl<'a> Answer<'a> {
    pub fn new(status: StatusCode, title: &'static str, message: String, dashboard: &str) -> Answer<'a> {
        Answer { status, title, message, next: None, routes: None, dashboard: dashboard.to_owned(), refresh: None }
    }

    /// What the reader can do next.
    pub fn next(mut self, next: impl Into<String>) -> Self {
        self.next = Some(next.into());
        self
    }

    pub fn routes(mut self, routes: &'a RoutesView) -> Self {
        self.routes = Some(routes);
        self
    }

    pub fn refresh(mut self, secs: u32) -> Self {
        self.refresh = Some(secs);
        self
    }

    /// The response in `fmt`, logged (the router's own 4xx/5xx for a host).
    pub fn render(&self, fmt: Format) -> Response<Body> {
        self.log();
        let (ctype, bytes) = self.body(fmt);
        let mut res = Response::new(full(bytes));
        *res.status_mut() = self.status;
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// The answer as a whole HTTP/1.1 response that closes the connection
    /// (for the lean path, which writes bytes, not `Response`s).
    pub fn to_http1(&self, fmt: Format) -> Vec<u8> {
        self.log();
        let (ctype, body) = self.body(fmt);
        let reason = self.status.canonical_reason().unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {ctype}\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.status.as_u16(),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// One info line per answer (the message names the host and the target);
    /// the same answer once a second at most, and at most 50 lines a second,
    /// so a client retrying in a loop does not flood the log.
    fn log(&self) {
        use std::hash::{Hash, Hasher};
        static RECENT: Mutex<Vec<(u64, Instant)>> = Mutex::new(Vec::new());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.status.as_u16(), &self.message).hash(&mut h);
        let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        if !may_log(&mut recent, h.finish(), Instant::now()) {
            return;
        }
        drop(recent);
        let (status, error) = (self.status.as_u16(), self.title);
        tracing::info!(status, error, message = %self.message, "answered");
    }

    /// Content type and bytes of the body in `fmt`.
    fn body(&self, fmt: Format) -> (&'static str, Vec<u8>) {
        match fmt {
            Format::Json => ("application/json", self.json().into_bytes()),
            Format::Html => ("text/html; charset=utf-8", self.html().into_bytes()),
            Format::Text => ("text/plain; charset=utf-8", self.text().into_bytes()),
        }
    }

    fn json(&self) -> String {
        let mut v = json!({ "status": self.status.as_u16(), "error": self.title, "message": self.message });
        if let Some(r) = self.routes {
            v["apps"] = serde_json::to_value(&r.apps).unwrap_or_default();
            v["static_routes"] = serde_json::to_value(&r.static_routes).unwrap_or_default();
        }
        v.to_string()
    }

    fn text(&self) -> String {
        let mut s = format!("{} {}\n{}\n", self.status.as_u16(), self.title, self.message);
        if let Some(r) = self.routes {
            s.push_str(if r.apps.is_empty() && r.static_routes.is_empty() {
                "\nNo apps are running.\n"
            } else {
                "\nLive apps:\n"
            });
            for a in &r.apps {
                for i in &a.instances {
                    s.push_str(&format!(
                        "  {} ({}){}  {}\n",
                        a.app,
                        i.instance,
                        if i.default { " default" } else { "" },
                        i.url
                    ));
                }
            }
            for st in &r.static_routes {
                s.push_str(&format!("  {} → {}  {}\n", st.host, st.target, st.url));
            }
        }
        s
    }

    fn html(&self) -> String {
        let code = self.status.as_u16();
        let mut main = format!("<h1>{code} {}</h1><p>{}</p>", escape(self.title), prose(&self.message));
        if let Some(next) = &self.next {
            main.push_str(&format!("<h2>What to do</h2><p>{}</p>", prose(next)));
        }
        if self.refresh.is_some() {
            main.push_str("<p class=muted>This page reloads by itself until the app answers.</p>");
        }
        if let Some(r) = self.routes {
            main.push_str(&routes_list(r));
        }
        main.push_str(&format!("<p><a href=\"{}\">Back to the dashboard</a></p>", escape(&self.dashboard)));
        let title = format!("{code} {} · agentfs", self.title);
        let head = String::new();
        Layout { title: &title, dashboard: &self.dashboard, main, refresh: self.refresh, script: None, head }.render()
    }
}

/// Whether an answer (`key`) may be logged at `now`, given the answers logged
/// in the last second (`recent`, updated): not the same one again, 50 at most.
fn may_log(recent: &mut Vec<(u64, Instant)>, key: u64, now: Instant) -> bool {
    recent.retain(|(_, t)| now.saturating_duration_since(*t) < Duration::from_secs(1));
    if recent.len() >= 50 || recent.iter().any(|(k, _)| *k == key) {
        return false;
    }
    recent.push((key, now));
    true
}

/// The live apps and static routes as links (a 404's "did you mean").
fn routes_list(r: &RoutesView) -> String {
    if r.apps.is_empty() && r.static_routes.is_empty() {
        return "<p>No apps are running. Start one with <code>agentfs wrap -- npm run dev</code>.</p>".into();
    }
    let mut s = String::from("<h2>Running now</h2><ul>");
    for a in &r.apps {
        for i in &a.instances {
            let default = if i.default { " <span class=muted>(default)</span>" } else { "" };
            s.push_str(&format!(
                "<li>{} ({}){default}: <a href=\"{u}\">{u}</a></li>",
                escape(&a.app),
                escape(&i.instance),
                u = escape(&i.url)
            ));
        }
    }
    for st in &r.static_routes {
        s.push_str(&format!(
            "<li>static → <code>{}</code>: <a href=\"{u}\">{u}</a></li>",
            escape(&st.target),
            u = escape(&st.url)
        ));
    }
    s.push_str("</ul>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AppView, InstanceView};

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    #[test]
    fn a_repeated_answer_is_logged_once_a_second_and_a_flood_is_capped() {
        let mut recent = Vec::new();
        let t = Instant::now();
        assert!(may_log(&mut recent, 1, t) && !may_log(&mut recent, 1, t + Duration::from_millis(500)));
        assert!(may_log(&mut recent, 1, t + Duration::from_millis(1001)), "again after a second");
        assert!((2..51).all(|k| may_log(&mut recent, k, t + Duration::from_millis(1100))));
        assert!(!may_log(&mut recent, 99, t + Duration::from_millis(1100)), "50 a second at most");
    }

    #[test]
    fn content_negotiation() {
        assert_eq!(Format::of(&headers("text/html,application/xhtml+xml,*/*;q=0.8")), Format::Html);
        assert_eq!(Format::of(&headers("application/json")), Format::Json);
        assert_eq!(Format::of(&headers("*/*")), Format::Text);
        assert_eq!(Format::of(&HeaderMap::new()), Format::Text);
    }

    #[test]
    fn not_found_lists_apps_in_every_format() {
        let inst = InstanceView {
            instance: "main".into(),
            default: true,
            url: "http://main.shop.localhost:7355".into(),
            primary_port: 3000,
            started_at_ms: 1,
            ports: vec![],
            cwd: None,
        };
        let app = AppView { app: "shop".into(), url: "http://shop.localhost:7355".into(), instances: vec![inst] };
        let routes = RoutesView { apps: vec![app], ..RoutesView::default() };
        let a =
            Answer::new(StatusCode::NOT_FOUND, "unknown host", "no app is called <x>".into(), "http://localhost:7355/")
                .routes(&routes);
        assert!(a.html().contains("http://main.shop.localhost:7355"));
        assert!(a.html().contains("&lt;x&gt;"), "the Host is escaped");
        assert!(a.html().contains("<a href=\"http://localhost:7355/\">Back to the dashboard</a>"));
        let j: serde_json::Value = serde_json::from_str(&a.json()).unwrap();
        assert_eq!(j["status"], 404);
        assert_eq!(j["apps"][0]["instances"][0]["url"], "http://main.shop.localhost:7355");
        assert!(a.text().contains("shop (main) default  http://main.shop.localhost:7355"));
        let r = a.render(Format::Json);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
