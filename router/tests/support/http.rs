//! HTTP helpers over real TCP connections to the router: a hyper HTTP/1.1
//! client (one connection per call unless kept), and raw-socket helpers for
//! what a well-behaved client would never send.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A finished response.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A kept-alive HTTP/1.1 connection to the router.
pub struct Conn {
    tx: SendRequest<Empty<Bytes>>,
}

impl Conn {
    pub async fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { tx }
    }

    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut b = Request::get(path).header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.tx.ready().await.unwrap();
        let res = self.tx.send_request(b.body(Empty::new()).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Got { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
    }
}

/// One GET on a fresh connection.
pub async fn get(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    Conn::open(port).await.get(host, path, headers).await
}

/// The `tag` of the fake app that answered `/` for `host`.
pub async fn tag(port: u16, host: &str) -> String {
    let got = get(port, host, "/", &[]).await;
    assert_eq!(got.status, 200, "{host}: {}", got.body);
    got.json()["tag"].as_str().unwrap().to_owned()
}

/// Sends raw bytes and reads until the peer closes or `limit` passes.
pub async fn raw(port: u16, bytes: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until `needle` has arrived (or panics after `limit`).
pub async fn read_until(s: &mut TcpStream, needle: &str, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        while !String::from_utf8_lossy(&out).contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}; got {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within {limit:?}; got {:?}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out).into_owned()
}
