//! Acceptance 2 and 3 (in-process parts): SSE's first event reaches the
//! client before the app ends the response; an Upgrade exchanges bytes both
//! ways across 65 s idle gaps and survives a route-table change; uploads
//! stream through; h2c clients are served.

mod support;

use std::time::Duration;

use agentfs_router::client;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::app::{self, ChannelBody, Spec};
use support::http::read_until;
use support::{Env, Router, blocking};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_first_event_arrives_before_the_response_ends() {
    let env = Env::new("sse");
    let a = app::start(&env.home, Spec::new("feed", "main", 3000, 1)).await;
    let mut config = env.config();
    config.limits.header_read_timeout = Duration::from_secs(1);
    let r = Router::start(config).await;
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nhost: feed.localhost\r\naccept: text/event-stream\r\n\r\n").await.unwrap();
    let first = read_until(&mut s, "data: first", Duration::from_secs(5)).await;
    assert!(first.contains("text/event-stream"), "{first}");
    assert!(!first.contains("data: last"), "the app has not sent more yet");
    // A quiet stream longer than the header timeout must not be cut by it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.ctl.release.notify_one();
    let rest = read_until(&mut s, "data: last", Duration::from_secs(5)).await;
    assert!(rest.contains("data: last"));
    r.stop().await.unwrap();
}

async fn open_ws(port: u16, host: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nhost: {host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_until(&mut s, "hello from", Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    s
}

async fn echo(s: &mut TcpStream, msg: &str) {
    s.write_all(msg.as_bytes()).await.unwrap();
    read_until(s, msg, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_survives_65s_idle_gaps_and_a_table_change() {
    let env = Env::new("ws");
    let _a = app::start(&env.home, Spec::new("hmr", "main", 5173, 1)).await;
    let mut config = env.config();
    config.limits.header_read_timeout = Duration::from_secs(2);
    config.rescan_interval = Duration::from_secs(1);
    let r = Router::start(config).await;
    let mut ws = open_ws(r.port, "hmr.localhost").await;
    echo(&mut ws, "ping-1").await;

    let other = app::start(&env.home, Spec::new("other", "main", 3000, 2)).await;
    r.rescan().await;
    let h = env.home.clone();
    assert_eq!(blocking(move || client::routes(&h)).await.unwrap().apps.len(), 2, "the table changed");
    // The idle gap is the behaviour under test: nothing crosses the tunnel for 65 s.
    tokio::time::sleep(Duration::from_secs(65)).await;
    echo(&mut ws, "ping-2 after 65 s idle").await;
    drop(other);
    std::fs::remove_file(env.run_dir().join("other.main.3000.json")).unwrap();
    r.rescan().await;
    echo(&mut ws, "ping-3 after a second table change").await;
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_through() {
    let env = Env::new("upload");
    let _a = app::start(&env.home, Spec::new("up", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let stream = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (chunks, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let req = Request::post("/upload").header("host", "up.localhost").body(ChannelBody(rx)).unwrap();
    let sending = tokio::spawn(async move {
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        for _ in 0..320 {
            chunks.send(chunk.clone()).await.unwrap();
        }
    });
    let res = tx.send_request(req).await.unwrap();
    sending.await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), (320 * 64 * 1024).to_string());
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let env = Env::new("h2c");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let stream = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for path in ["/a", "/b"] {
        let uri = format!("http://main.shop.localhost:{}{path}", r.port);
        let res = tx.send_request(Request::get(uri).body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["tag"], a.stem);
        assert_eq!(v["uri"], path, "origin-form to the app");
        assert_eq!(v["headers"]["host"], format!("main.shop.localhost:{}", r.port), "Host from :authority");
    }
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_request_survives_its_route_going_away() {
    let env = Env::new("inflight");
    let a = app::start(&env.home, Spec::new("slow", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let port = r.port;
    let got = a.ctl.got.notified();
    let in_flight = tokio::spawn(async move { support::http::get(port, "slow.localhost", "/slow", &[]).await });
    got.await;
    std::fs::remove_file(env.run_dir().join(format!("{}.json", a.stem))).unwrap();
    std::fs::remove_file(&a.sock).unwrap();
    r.rescan().await;
    assert_eq!(support::http::get(port, "slow.localhost", "/", &[]).await.status, 404, "the route is gone");
    a.ctl.release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!((res.status.as_u16(), res.body.as_str()), (200, "slow done"));
    r.stop().await.unwrap();
}
