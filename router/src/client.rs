//! A small blocking client for the management API on `router.sock`, for the
//! CLI: one HTTP/1.1 request per connection, JSON in and out. Errors tell
//! apart "no router" ([`ClientError::NotRunning`]), "the router said no"
//! ([`ClientError::Refused`], [`ClientError::Api`]) and "that was not the
//! router talking" ([`ClientError::Protocol`]).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use agentfs_registry::Home;
use agentfs_registry::sunpath::SockPath;
use serde::de::DeserializeOwned;

use crate::api::{ApiError, PutStatic, RoutesView, StaticView, Status};

/// Largest answer read.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
/// How long one call may take (a rescan of a large run/ included).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the agentfs router is not running (nothing answers on {0}); start it with `agentfs router start`")]
    NotRunning(String),
    #[error("the agentfs router refused this client: {0}")]
    Refused(String),
    #[error("the agentfs router answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("unexpected answer from {path}: {why}")]
    Protocol { path: String, why: String },
    #[error("cannot talk to the agentfs router: {0}")]
    Io(#[from] io::Error),
}

/// `GET /v1/status`.
pub fn status(home: &Home) -> Result<Status, ClientError> {
    call(home, "GET", "/v1/status", None)
}

/// `GET /v1/routes`.
pub fn routes(home: &Home) -> Result<RoutesView, ClientError> {
    call(home, "GET", "/v1/routes", None)
}

/// `PUT /v1/static/<host>`: route `host` to `target` (`/path.sock`, `host:port`, `port`), persisted.
pub fn put_static(home: &Home, host: &str, target: &str, allow_remote: bool) -> Result<StaticView, ClientError> {
    let body = serde_json::to_vec(&PutStatic { target: target.to_owned(), allow_remote }).map_err(io::Error::other)?;
    call(home, "PUT", &format!("/v1/static/{host}"), Some(&body))
}

/// `DELETE /v1/static/<host>`.
pub fn delete_static(home: &Home, host: &str) -> Result<(), ClientError> {
    call::<serde_json::Value>(home, "DELETE", &format!("/v1/static/{host}"), None).map(drop)
}

/// `POST /v1/rescan`: returns once a full rescan has finished.
pub fn rescan(home: &Home) -> Result<Status, ClientError> {
    call(home, "POST", "/v1/rescan", None)
}

/// `POST /v1/shutdown`: the router stops accepting, drains and exits.
pub fn shutdown(home: &Home) -> Result<(), ClientError> {
    call::<serde_json::Value>(home, "POST", "/v1/shutdown", None).map(drop)
}

fn call<T: DeserializeOwned>(home: &Home, method: &str, path: &str, body: Option<&[u8]>) -> Result<T, ClientError> {
    let sock = home.router_sock();
    let shown = sock.display().to_string();
    // A path too long for sun_path is reached through its directory; a
    // directory that is not there means no router either.
    let alias = match SockPath::new(&sock) {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            return Err(ClientError::NotRunning(shown));
        }
        Err(e) => return Err(e.into()),
    };
    let mut stream = match UnixStream::connect(alias.as_path()) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(ClientError::NotRunning(shown));
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(ClientError::Refused(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    // The router may answer (a 400 for a bad route) and close before it has
    // read the whole body: the answer is still there to read.
    match stream.write_all(&request) {
        Err(e) if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
            return Err(e.into());
        }
        _ => {}
    }
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let proto = |why: &str| ClientError::Protocol { path: shown.clone(), why: why.to_owned() };
    let (status, payload) = parse_response(&raw).map_err(&proto)?;
    if status == 403 {
        return Err(ClientError::Refused(api_message(payload)));
    }
    if !(200..300).contains(&status) {
        return Err(ClientError::Api { status, message: api_message(payload) });
    }
    serde_json::from_slice(payload).map_err(|e| proto(&format!("bad JSON: {e}")))
}

fn api_message(payload: &[u8]) -> String {
    serde_json::from_slice::<ApiError>(payload)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(payload).trim().to_owned())
}

/// Status code and body of a `connection: close` HTTP/1.1 answer.
fn parse_response(raw: &[u8]) -> Result<(u16, &[u8]), &'static str> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no complete response head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "response head is not text")?;
    let status_line = head.lines().next().ok_or("empty response")?;
    let mut parts = status_line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err("not an HTTP/1.x response");
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let mut body = &raw[end + 4..];
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    if let Some(n) = length {
        body = body.get(..n).ok_or("response shorter than its content-length")?;
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let raw = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}trailing";
        assert_eq!(parse_response(raw), Ok((201, &b"{}"[..])));
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert_eq!(api_message(br#"{"error":"nope"}"#), "nope");
    }

    #[test]
    fn no_router_is_not_running() {
        let home = Home::at(std::env::temp_dir().join("agentfs-client-none")).unwrap();
        assert!(matches!(status(&home), Err(ClientError::NotRunning(_))));
        let long = std::env::temp_dir().join("agentfs-client-none").join("x".repeat(150));
        let home = Home::at(long).unwrap();
        assert!(matches!(status(&home), Err(ClientError::NotRunning(_))), "a long home that does not exist");
    }
}
