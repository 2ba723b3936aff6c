//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT): a browser on an h2
//! connection opens a WebSocket (Vite's HMR, say) as a `CONNECT` stream with
//! `:protocol = websocket`. Apps speak only the HTTP/1.1 handshake, so the
//! request goes to the app as a `GET` with `Upgrade: websocket` and a fresh
//! `Sec-WebSocket-Key` (h2 has none), and the app's `101` comes back as the
//! `200` that opens the h2 stream. The frames then pass unchanged: RFC 8441
//! keeps the WebSocket framing, so one tunnel carries both.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

/// The `:protocol` this router bridges.
const WEBSOCKET: &str = "websocket";

/// Whether `req` is an extended CONNECT of a WebSocket.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT
        && req.extensions().get::<hyper::ext::Protocol>().is_some_and(|p| p.as_str().eq_ignore_ascii_case(WEBSOCKET))
}

/// Turns the CONNECT into the HTTP/1.1 handshake the app expects (the
/// version and the `Connection` header are set by the forwarding phase).
pub fn to_http1_handshake<B>(req: &mut Request<B>) {
    *req.method_mut() = Method::GET;
    req.extensions_mut().remove::<hyper::ext::Protocol>();
    let h = req.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(key) = HeaderValue::from_str(&handshake_key()) {
        h.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    h.entry(header::SEC_WEBSOCKET_VERSION).or_insert(HeaderValue::from_static("13"));
}

/// Turns the app's `101 Switching Protocols` into the h2 `200`; the
/// negotiated subprotocol and extensions stay.
pub fn to_h2_answer<B>(res: &mut Response<B>) {
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.remove(header::SEC_WEBSOCKET_ACCEPT);
    h.remove(header::UPGRADE);
    h.remove(header::CONNECTION);
}

/// 16 bytes, base64 (RFC 6455 §4.1): unpredictable enough for its only
/// use, which is that the app proves it speaks WebSocket.
fn handshake_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let word = |salt: u64| {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(n ^ salt);
        h.finish().to_le_bytes()
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&word(0));
    bytes[8..].copy_from_slice(&word(u64::MAX));
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            let c = if i <= chunk.len() { ABC[(n >> shift) as usize & 63] } else { b'=' };
            out.push(char::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn keys_are_24_chars_and_differ() {
        let (a, b) = (handshake_key(), handshake_key());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn a_websocket_connect_becomes_a_get_upgrade_and_its_101_a_200() {
        let mut req = Request::builder().method(Method::CONNECT).uri("https://a.localhost/ws").body(()).unwrap();
        assert!(!is_websocket(&req), "a plain CONNECT is not one");
        req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
        assert!(is_websocket(&req));
        to_http1_handshake(&mut req);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.headers()[header::UPGRADE], "websocket");
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_KEY].len(), 24);
        let mut res = Response::builder()
            .status(101)
            .header(header::SEC_WEBSOCKET_ACCEPT, "x")
            .header(header::SEC_WEBSOCKET_PROTOCOL, "vite-hmr")
            .body(())
            .unwrap();
        to_h2_answer(&mut res);
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get(header::SEC_WEBSOCKET_ACCEPT).is_none());
        assert_eq!(res.headers()[header::SEC_WEBSOCKET_PROTOCOL], "vite-hmr");
    }
}
