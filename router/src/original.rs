//! Original ports: while an instance has a converted listener on port P, the
//! router also listens on `127.0.0.1:P` and `[::1]:P`, so what people and
//! tools still type — `localhost:5173`, a baked-in HMR port, an OAuth
//! callback, `redis-cli -p 6379` — keeps working outside the instance.
//! Outside an instance `localhost:P` means what it meant before agentfs:
//! the first app that took P. (Inside an instance the shim keeps loopback
//! the instance's own, and refuses other instances' ports.)
//!
//! - Which ports: every port a live instance converted, but the router's own
//!   (see `Table::original_ports`); mirrored within a table change of the
//!   first listener and released within one of the last.
//! - A port the router cannot bind (another program holds it, or < 1024
//!   without the right) is skipped, logged once and shown with its reason.
//! - A connection is told apart by its first bytes: an HTTP/1.x request line
//!   or the h2 preface is HTTP, routed by Host (`<instance>.<app>.localhost:P`),
//!   then by `Origin`/`Referer`, then to the earliest holder; anything else is
//!   tunnelled byte for byte to the earliest holder. A client silent for
//!   [`SNIFF_WAIT`] may be waiting for a server that speaks first (MySQL,
//!   SMTP) or be a browser's speculative preconnect: the holder is connected
//!   then, and whichever speaks first decides — the app (tunnel), or the
//!   client (HTTP is routed as above, anything else tunnelled).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::api::OriginalPortView;
use crate::host::{Host, HostError};
use crate::state::Shared;
use crate::stream::AppStream;
use crate::table::{ReplicaSet, Table};

/// How long a new connection on an original port may stay silent before it
/// is taken for a protocol whose server speaks first, and tunnelled.
pub const SNIFF_WAIT: Duration = Duration::from_millis(300);

/// What the router does with each original port.
#[derive(Default)]
pub struct Originals {
    ports: Mutex<BTreeMap<u16, PortState>>,
}

enum PortState {
    Mirrored(Vec<AbortHandle>),
    Skipped(String),
}

impl Originals {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, PortState>> {
        self.ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each original port with whether it is mirrored, and why not.
    pub fn view(&self, table: &Table) -> Vec<OriginalPortView> {
        let ports = self.lock();
        let holder = |p: u16| table.original_holder(p).map(|s| s.instance.clone()).unwrap_or_default();
        ports
            .iter()
            .map(|(port, st)| match st {
                PortState::Mirrored(_) => {
                    OriginalPortView { port: *port, mirrored: true, reason: None, answers: holder(*port) }
                }
                PortState::Skipped(why) => {
                    OriginalPortView { port: *port, mirrored: false, reason: Some(why.clone()), answers: holder(*port) }
                }
            })
            .collect()
    }

    /// Stops mirroring everything (the router stops).
    pub fn release_all(&self) {
        for (_, st) in std::mem::take(&mut *self.lock()) {
            if let PortState::Mirrored(tasks) = st {
                tasks.iter().for_each(AbortHandle::abort);
            }
        }
    }
}

/// Keeps the mirrored ports equal to what the table holds, until the router
/// stops. `serve` starts an accept loop for a bound listener of a port.
pub async fn run(shared: Arc<Shared>, serve: impl Fn(TcpListener, u16) -> AbortHandle) {
    let mut changes = shared.subscribe();
    loop {
        reconcile(&shared, &serve);
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = shared.stopped() => break,
        }
    }
    shared.originals.release_all();
}

fn reconcile(shared: &Shared, serve: &impl Fn(TcpListener, u16) -> AbortHandle) {
    let wanted: Vec<u16> = if shared.config.original_ports {
        shared.table().original_ports().filter(|p| *p != shared.port).collect()
    } else {
        Vec::new()
    };
    let mut ports = shared.originals.lock();
    ports.retain(|port, st| {
        let keep = wanted.contains(port);
        if let (false, PortState::Mirrored(tasks)) = (keep, &*st) {
            tasks.iter().for_each(AbortHandle::abort);
            tracing::info!(port, "original port released");
        }
        keep
    });
    for port in wanted {
        if ports.contains_key(&port) {
            continue;
        }
        let state = match crate::listen::bind(port, false) {
            Ok(bound) => {
                tracing::info!(port, "original port mirrored");
                PortState::Mirrored(bound.listeners.into_iter().map(|l| serve(l, port)).collect())
            }
            Err(e) => {
                let why = skip_reason(port, &e.to_string());
                tracing::info!(port, why, "original port not mirrored");
                PortState::Skipped(why)
            }
        };
        ports.insert(port, state);
    }
}

fn skip_reason(port: u16, error: &str) -> String {
    let holder = agentfs_registry::procnet::tcp_port_holder(port);
    match holder {
        Some(h) => format!("in use by {h}"),
        None if error.contains("in use") => "in use by another program".to_owned(),
        None => error.trim_start_matches("cannot listen on port ").to_owned(),
    }
}

/// What a new connection on an original port starts with.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    Http,
    Other,
    Silent,
    Closed,
}

/// Looks at the first bytes without taking them, waiting up to `wait`.
async fn sniff(stream: &TcpStream, wait: Duration) -> Sniffed {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(wait, stream.peek(&mut buf)).await {
        Err(_) => Sniffed::Silent,
        Ok(Ok(0) | Err(_)) => Sniffed::Closed,
        Ok(Ok(n)) if looks_like_http(&buf[..n]) => Sniffed::Http,
        Ok(Ok(_)) => Sniffed::Other,
    }
}

/// Decides what a connection on original port `port` is: `Some(stream)` for
/// HTTP, to be served as on the router's own port; `None` once it has been
/// tunnelled to the port's earliest holder (or has closed).
pub async fn admit(client: TcpStream, port: u16, shared: &Shared) -> Option<TcpStream> {
    let first = sniff(&client, SNIFF_WAIT).await;
    if first == Sniffed::Http {
        return Some(client);
    }
    let set = shared.table().original_holder(port).cloned()?;
    match first {
        Sniffed::Http | Sniffed::Closed => None,
        Sniffed::Other => {
            tunnel(client, &set, None).await;
            None
        }
        Sniffed::Silent => {
            let app = first_replica(&set).await?;
            tokio::select! {
                _ = app.readable() => tunnel(client, &set, Some(app)).await,
                said = sniff(&client, Duration::MAX) => match said {
                    Sniffed::Http => return Some(client), // the app connection is dropped unused
                    Sniffed::Closed => {}
                    _ => tunnel(client, &set, Some(app)).await,
                },
            }
            None
        }
    }
}

async fn first_replica(set: &ReplicaSet) -> Option<AppStream> {
    for up in set.candidates() {
        if let Ok(app) = up.connect_stream().await {
            return Some(app);
        }
    }
    tracing::debug!(what = set.what, "original-port tunnel: no replica answers");
    None
}

/// An HTTP/1.x request line (`TOKEN SP`) or the start of the h2 preface.
fn looks_like_http(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (1..=10).contains(&method_len) && first.get(method_len) == Some(&b' ')
}

/// Joins a non-HTTP client with the earliest holder of its port (on `app`,
/// if connected already), byte for byte.
async fn tunnel(mut client: TcpStream, set: &ReplicaSet, app: Option<AppStream>) {
    let app = match app {
        Some(a) => Some(a),
        None => first_replica(set).await,
    };
    let Some(mut app) = app else { return };
    match tokio::io::copy_bidirectional(&mut client, &mut app).await {
        Ok((up, down)) => tracing::debug!(up, down, "original-port tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "original-port tunnel ended"),
    }
}

/// Where a request on original port `port` goes.
pub enum OnPort<'t> {
    Route(&'t Arc<ReplicaSet>),
    Unknown,
    Error(HostError),
}

/// Resolves an HTTP request on original port `port`: a named instance
/// (`<instance>.<app>.localhost[:P]`), else for a loopback name the instance
/// the page came from (`Origin`, then `Referer`), else the earliest holder.
pub fn resolve<'t>(table: &'t Table, port: u16, host: &str, origin: Option<&str>, referer: Option<&str>) -> OnPort<'t> {
    if is_loopback_name(host) {
        let from_page = [origin, referer].into_iter().flatten().find_map(|u| page_instance(table, port, u));
        return from_page.or_else(|| table.original_holder(port)).map_or(OnPort::Unknown, OnPort::Route);
    }
    let host = match Host::parse(host) {
        Ok(h) => h,
        Err(e) => return OnPort::Error(e),
    };
    let Some(r) = host.app_ref() else { return OnPort::Unknown };
    let found = match r.port {
        Some(p) => table.original_of(p, r.app, r.instance).or_else(|| route_of(table, &host)),
        None => table.original_of(port, r.app, r.instance),
    };
    found.map_or(OnPort::Unknown, OnPort::Route)
}

fn route_of<'t>(table: &'t Table, host: &Host<'_>) -> Option<&'t Arc<ReplicaSet>> {
    match table.resolve(host) {
        crate::table::Lookup::Route(set) => Some(set),
        _ => None,
    }
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback_name(host: &str) -> bool {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(a, _)| a),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "::1"
}

/// The instance (holding `port`) that a page URL (`http://b.app.localhost:7355/x`) names.
fn page_instance<'t>(table: &'t Table, port: u16, url: &str) -> Option<&'t Arc<ReplicaSet>> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = Host::parse(authority).ok()?;
    let r = host.app_ref()?;
    table.original_of(port, r.app, r.instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_told_from_the_rest() {
        for http in [&b"GET / HTTP/1.1\r\n"[..], b"POST /x", b"OPTIONS * ", b"PRI * HTTP/2.0"] {
            assert!(looks_like_http(http), "{:?}", String::from_utf8_lossy(http));
        }
        let redis = b"*1\r\n$4\r\nPING\r\n";
        let pg = [0u8, 0, 0, 8, 4, 210, 22, 47];
        let tls = [0x16u8, 3, 1, 2, 0];
        for other in [&redis[..], &pg, &tls, b"get / HTTP/1.1", b"GET", b"VERYLONGMETHOD x"] {
            assert!(!looks_like_http(other), "{other:?}");
        }
    }

    #[test]
    fn loopback_names() {
        for name in ["localhost", "localhost:3000", "LOCALHOST.", "127.0.0.1", "127.0.0.1:3000", "[::1]", "[::1]:80"] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in ["shop.localhost", "evil.com", "127.0.0.2", "[::2]:80"] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }
}
