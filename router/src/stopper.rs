//! The dashboard's stop button: `POST /api/stop/<instance>.<app>` stops an
//! instance as `agentfs down` does (SIGTERM to its supervisors and wrappers,
//! which stop their trees). A request that changes something must come from
//! the router's own user, from the dashboard page itself; every check must
//! hold:
//! - the client's end of the TCP connection belongs to the router's uid
//!   (Linux's socket table; where it cannot be read — macOS — the button is
//!   not offered and the request refused);
//! - `Origin` is the dashboard host the request was sent to, and
//!   `Sec-Fetch-Site`, when sent, is `same-origin` (no other site's page);
//! - `X-Agentfs-Token` is this router's token, which only the dashboard page
//!   carries (another site cannot read it).

use http::{HeaderMap, Response, StatusCode, header};

use agentfs_registry::Label;

use crate::answers::{Answer, Format};
use crate::body::Body;
use crate::headers::Forwarded;
use crate::state::Shared;

/// The header the page sends the token in.
pub const TOKEN_HEADER: &str = "x-agentfs-token";

/// Whether this platform can tell who asks (and so offers the button).
pub fn available() -> bool {
    cfg!(target_os = "linux")
}

/// A new random token (128 bits), or `None` if the system has no randomness to give.
pub fn new_token() -> Option<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").ok()?.read_exact(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Answers `POST /api/stop/<target>`.
pub fn serve(headers: &HeaderMap, target: &str, shared: &Shared, conn: &Forwarded) -> Response<Body> {
    let fmt = Format::of(headers);
    let dash = shared.dashboard_url();
    if let Err(why) = allowed(headers, shared, conn) {
        let next = "Use the stop button on the dashboard page itself, or `agentfs down` in a terminal.";
        return Answer::new(StatusCode::FORBIDDEN, "not allowed", why, &dash).next(next).render(fmt);
    }
    let Some((app, instance)) = parse(target) else {
        let message = format!("{target:?} is not <instance>.<app>");
        return Answer::new(StatusCode::BAD_REQUEST, "bad instance", message, &dash).render(fmt);
    };
    match agentfs_registry::service::signal_stop(&shared.config.home, &app, &instance) {
        Ok((signalled, _)) if !signalled.is_empty() => {
            tracing::info!(app = %app, instance = %instance, pids = ?signalled, "stopping, as asked on the dashboard");
            let body = serde_json::json!({ "stopping": format!("{instance}.{app}"), "pids": signalled });
            let mut res = Response::new(crate::body::full(body.to_string()));
            *res.status_mut() = StatusCode::ACCEPTED;
            res.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            res
        }
        Ok(_) => {
            let message = format!("{instance}.{app} does not run");
            Answer::new(StatusCode::NOT_FOUND, "not running", message, &dash).render(fmt)
        }
        Err(e) => {
            let message = format!("cannot read the run directory: {e}");
            Answer::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot stop", message, &dash).render(fmt)
        }
    }
}

/// Every check of the module's doc, or the first that fails.
fn allowed(headers: &HeaderMap, shared: &Shared, conn: &Forwarded) -> Result<(), String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site").filter(|s| *s != "same-origin") {
        return Err(format!("the request came from another site (Sec-Fetch-Site: {site})"));
    }
    let host = get(header::HOST.as_str()).unwrap_or_default();
    let scheme = std::str::from_utf8(conn.proto()).unwrap_or("http");
    let origin = get(header::ORIGIN.as_str()).unwrap_or_default();
    if host.is_empty() || origin != format!("{scheme}://{host}") {
        return Err(format!("the request's Origin ({origin:?}) is not the dashboard's ({scheme}://{host})"));
    }
    let token = shared.token.as_deref().ok_or("this router has no token to check")?;
    if !same(get(TOKEN_HEADER).unwrap_or_default().as_bytes(), token.as_bytes()) {
        return Err("the request does not carry the dashboard page's token".into());
    }
    same_user(conn)
}

/// Whether the client of `conn` runs as the router's user (Linux's socket
/// table tells); the reason if not. Also what lets the dashboard show log lines.
pub fn same_user(conn: &Forwarded) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    let local = conn.local.ok_or("the router's end of the connection is unknown")?;
    match agentfs_registry::procnet::tcp_client_uid(conn.peer, local) {
        Some(uid) if uid == me => Ok(()),
        Some(uid) => Err(format!("the request comes from uid {uid}, not from the router's user (uid {me})")),
        None => Err("cannot tell which user sent the request (only Linux's socket table tells)".into()),
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse(target: &str) -> Option<(Label, Label)> {
    let (instance, app) = target.split_once('.')?;
    Some((Label::parse(app).ok()?, Label::parse_instance(instance).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_tokens() {
        assert!(parse("main.shop").is_some());
        assert!(parse("shop").is_none() && parse("a.b.c").is_none() && parse("../x.shop").is_none());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        let t = new_token().unwrap();
        assert!(t.len() == 32 && t != new_token().unwrap());
    }
}
