//! Header rules of the forwarding phase: hop-by-hop headers (and those the
//! `Connection` header names) are stripped both ways, `Upgrade` survives on
//! upgrade requests, `X-Forwarded-*` are set, and `x-agentfs-hops` counts
//! passes through a router so a route pointing back at it ends in a 508.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The loop counter header.
pub const HOPS: HeaderName = HeaderName::from_static("x-agentfs-hops");
/// On an answer from an app's original port: which instance answered (`main.shop`).
pub const X_AGENTFS_INSTANCE: HeaderName = HeaderName::from_static("x-agentfs-instance");
/// Passes allowed; the next one is a loop (508).
pub const MAX_HOPS: u32 = 5;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones), besides
/// `Upgrade`, which survives on upgrade requests. The one list both request
/// paths strip.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// The headers the router sets on every forwarded request (a client's own
/// never pass): `X-Forwarded-*` and the hop count.
pub const SET_BY_ROUTER: [&str; 5] =
    ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-agentfs-hops"];

/// Whether a request asks to switch protocols (WebSocket, HMR).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// The hops a request has made so far (a bad value counts as the maximum).
pub fn hops(headers: &HeaderMap) -> u32 {
    match headers.get(&HOPS) {
        None => 0,
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse().ok()).unwrap_or(MAX_HOPS),
    }
}

/// Removes hop-by-hop headers; keeps `Connection: upgrade` + `Upgrade` when `upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) && !names_only_standard(headers) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    // One pass over the names instead of a hashed removal per listed header:
    // most messages carry none of them, or only `Connection`.
    if headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str()) || k == header::UPGRADE) {
        for n in HOP_BY_HOP {
            headers.remove(n);
        }
        if !upgrade {
            headers.remove(header::UPGRADE);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What one client connection contributes to `X-Forwarded-*`, rendered
/// once when it is accepted rather than on every request.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The peer's address (an IPv4-mapped one as plain IPv4).
    ip: HeaderValue,
    /// The router port the client connected to.
    port: HeaderValue,
    /// The client spoke TLS to the router.
    https: bool,
    /// The connection's two ends: the client's address and the router's.
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
}

impl Forwarded {
    /// For a connection from `peer` to the router's `local` address (its port, `local_port`).
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>, local_port: u16) -> Forwarded {
        let ip = peer.ip().to_canonical().to_string();
        let ip = HeaderValue::try_from(ip).unwrap_or(HeaderValue::from_static("unknown"));
        Forwarded { ip, port: HeaderValue::from(local_port), https: false, peer, local }
    }

    /// The same, for a connection that came over TLS.
    pub fn over_tls(self) -> Forwarded {
        Forwarded { https: true, ..self }
    }

    /// The `X-Forwarded-Proto` value, as bytes.
    pub fn proto(&self) -> &'static [u8] {
        if self.https { b"https" } else { b"http" }
    }

    /// The `X-Forwarded-For` entry, as bytes.
    pub fn ip(&self) -> &[u8] {
        self.ip.as_bytes()
    }

    /// The `X-Forwarded-Port` value, as bytes.
    pub fn port(&self) -> &[u8] {
        self.port.as_bytes()
    }
}

/// `x-agentfs-hops` values after a pass: requests with `MAX_HOPS` or more
/// never get here.
const HOP_VALUES: [HeaderValue; MAX_HOPS as usize + 1] = [
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
    HeaderValue::from_static("4"),
    HeaderValue::from_static("5"),
    HeaderValue::from_static("6"),
];

/// Sets the headers an app behind the router is told: who asked, over what,
/// for which host and port, and how many routers the request passed.
pub fn set_forwarded(headers: &mut HeaderMap, conn: &Forwarded, host: &HeaderValue, hops: u32) {
    headers.reserve(6); // grow once, not insert by insert
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::try_from(format!("{prev}, {}", conn.ip.to_str().unwrap_or_default())).ok()
        }
        _ => Some(conn.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if conn.https { "https" } else { "http" }));
    headers.insert(X_FORWARDED_HOST, host.clone());
    headers.insert(X_FORWARDED_PORT, conn.port.clone());
    let hops = HOP_VALUES.get(hops as usize).cloned().unwrap_or_else(|| HeaderValue::from(hops + 1));
    headers.insert(HOPS, hops);
}

/// Whether `Connection` names only `keep-alive` and `upgrade` (the usual
/// case, both ways): headers the rules below strip anyway, so the named
/// headers need not be collected (which allocates).
fn names_only_standard(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().all(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .all(|t| t.is_empty() || t.eq_ignore_ascii_case("keep-alive") || t.eq_ignore_ascii_case("upgrade"))
        })
    })
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("origin", "http://shop.localhost"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["origin"]);
    }

    #[test]
    fn the_usual_connection_values_strip_the_same() {
        let mut h =
            map(&[("connection", "Keep-Alive, upgrade"), ("keep-alive", "timeout=5"), ("upgrade", "h2c"), ("x", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x"]);
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn upgrade_keeps_upgrade() {
        let mut h = map(&[("connection", "Upgrade, x-a"), ("upgrade", "websocket"), ("x-a", "1")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(h.get("x-a").is_none());
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarded_and_hops() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1"), ("x-agentfs-hops", "2")]);
        assert_eq!(hops(&h), 2);
        let n = hops(&h);
        let conn = Forwarded::new("[::ffff:127.0.0.1]:5000".parse().unwrap(), None, 7355);
        set_forwarded(&mut h, &conn, &HeaderValue::from_static("shop.localhost:7355"), n);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "shop.localhost:7355");
        assert_eq!(h.get("x-forwarded-port").unwrap(), "7355");
        assert_eq!(h.get("x-agentfs-hops").unwrap(), "3");
        assert_eq!(hops(&map(&[("x-agentfs-hops", "junk")])), MAX_HOPS);
        let mut fresh = HeaderMap::new();
        set_forwarded(&mut fresh, &conn, &HeaderValue::from_static("shop.localhost"), 0);
        assert_eq!(fresh.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(fresh.get("x-agentfs-hops").unwrap(), "1");
        set_forwarded(&mut fresh, &conn, &HeaderValue::from_static("shop.localhost"), 9);
        assert_eq!(fresh.get("x-agentfs-hops").unwrap(), "10");
    }
}
