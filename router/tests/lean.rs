//! The lean path (plain GET/HEAD/OPTIONS proxied without hyper): bodies
//! framed every way an app frames them, app connections reused and retried
//! when a pooled one was closed, pipelined requests answered in order, bad
//! answers turned into a 502, and the hand-over to the general path when a
//! connection sends something else. The app here is a raw socket server so
//! that it can answer exactly (and as badly) as each case needs.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentfs_registry::{record, scan};
use support::app::{Spec, sidecar};
use support::http::{Conn, read_until};
use support::{Env, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// What the scripted app saw.
#[derive(Default)]
struct Seen {
    conns: AtomicUsize,
    /// Connections that have ended (the router closed them, or the app did).
    ended: AtomicUsize,
    heads: Mutex<Vec<String>>,
    /// `/late` has written its stray bytes.
    late_written: AtomicUsize,
}

/// Starts the scripted app as `shop (main)` port 3000.
fn start_app(home: &agentfs_registry::Home) -> Arc<Seen> {
    let spec = Spec::new("shop", "main", 3000, 10);
    let run = home.run_dir();
    let sock = scan::socket_path(&run, "shop.main.3000");
    let listener = UnixListener::bind(&sock).unwrap();
    record::write(&scan::sidecar_path(&run, "shop.main.3000"), &sidecar(&spec, &sock)).unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            s.conns.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                serve(stream, s.clone()).await;
                s.ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    seen
}

/// Answers each request by its path; some answers end the connection.
async fn serve(mut s: UnixStream, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        seen.heads.lock().unwrap().push(head.clone());
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let (answer, close): (&[u8], bool) = match path.as_str() {
            "/len" => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
            "/chunked" => {
                (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n", false)
            }
            "/hints" => (b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false),
            "/close" => (b"HTTP/1.0 200 OK\r\n\r\nuntil close", true),
            "/stale" => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true),
            "/garbage" => (b"NOT HTTP AT ALL\r\n\r\n", true),
            "/short" => (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf", true),
            "/never" => (b"", false),
            "/hangup" => (b"", true),
            // The first chunk of a stream that goes on (an event stream).
            "/hold" => (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", false),
            "/late" => {
                // A complete answer, then bytes nobody asked for, a moment later.
                let _ = s.write_all(b"HTTP/1.1 304 Not Modified\r\n\r\n").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\nSOMEONE ELSE'S").await;
                seen.late_written.fetch_add(1, Ordering::SeqCst);
                (b"", false)
            }
            _ => (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false),
        };
        if s.write_all(answer).await.is_err() || close {
            return;
        }
    }
}

async fn setup(tag: &str) -> (Env, Router, Arc<Seen>) {
    let env = Env::new(tag);
    let seen = start_app(&env.home);
    let r = Router::start(env.config()).await;
    (env, r, seen)
}

async fn connect(r: &Router) -> TcpStream {
    TcpStream::connect(("127.0.0.1", r.port)).await.unwrap()
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Case-Kept: 1\r\n\r\n")
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_every_framing_pass_on_one_reused_app_connection() {
    let (_env, r, seen) = setup("lean-framing").await;
    let host = r.url_host("shop.localhost");
    let mut c = Conn::open(r.port).await;
    for _ in 0..3 {
        let got = c.get(&host, "/len", &[]).await;
        assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "hello"));
    }
    let got = c.get(&host, "/chunked", &[]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "hello world"));
    let got = c.get(&host, "/hints", &[]).await;
    assert_eq!(got.status.as_u16(), 204, "the 103 is not passed on; the final answer is");
    let got = c.get(&host, "/len", &[]).await;
    assert_eq!(got.body, "hello");
    assert_eq!(seen.conns.load(Ordering::SeqCst), 1, "every request went over one pooled app connection");
    let head = seen.heads.lock().unwrap()[0].clone();
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n") && head.contains("x-agentfs-hops: 1\r\n"), "{head}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_env, r, seen) = setup("lean-pipe").await;
    let host = r.url_host("shop.localhost");
    let mut s = connect(&r).await;
    s.write_all(format!("{}{}{}", get("/len", &host), get("/chunked", &host), get("/len", &host)).as_bytes())
        .await
        .unwrap();
    let mut got = String::new();
    while !(got.contains("x-t: 1\r\n\r\n") && got.matches("hello").count() == 3) {
        got += &read_until(&mut s, "hello", WAIT).await;
    }
    let first = got.find("content-length: 5").unwrap();
    let second = got.find("transfer-encoding: chunked").unwrap();
    assert!(first < second, "{got}");
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
    let head = seen.heads.lock().unwrap()[0].clone();
    assert!(head.contains("\r\nX-Case-Kept: 1\r\n"), "the head passes byte for byte: {head}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_app_closed_is_replaced_unseen() {
    let (_env, r, seen) = setup("lean-stale").await;
    let host = r.url_host("shop.localhost");
    let mut s = connect(&r).await;
    s.write_all(get("/stale", &host).as_bytes()).await.unwrap();
    read_until(&mut s, "\r\n\r\nok", WAIT).await;
    // The app closed that connection after answering, without saying so.
    s.write_all(get("/len", &host).as_bytes()).await.unwrap();
    let got = read_until(&mut s, "hello", WAIT).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert_eq!(seen.conns.load(Ordering::SeqCst), 2);
    let head = seen.heads.lock().unwrap()[1].clone();
    assert!(head.contains("\r\nX-Case-Kept: 1\r\n"), "retried on the lean path, not handed over: {head}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_an_app_sends_after_its_answer_never_reach_the_next_request() {
    let (_env, r, seen) = setup("lean-late").await;
    let host = r.url_host("shop.localhost");
    let mut c = Conn::open(r.port).await;
    assert_eq!(c.get(&host, "/late", &[]).await.status.as_u16(), 304);
    support::poll(WAIT, || async { (seen.late_written.load(Ordering::SeqCst) == 1).then_some(()) }).await.unwrap();
    let got = Conn::open(r.port).await.get(&host, "/len", &[]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "hello"), "another client's request");
    assert_eq!(seen.conns.load(Ordering::SeqCst), 2, "the app connection with stray bytes was not reused");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_waiting_frees_the_app_connection() {
    let (_env, r, seen) = setup("lean-gone").await;
    let mut s = connect(&r).await;
    s.write_all(get("/never", &r.url_host("shop.localhost")).as_bytes()).await.unwrap();
    support::poll(WAIT, || async { (!seen.heads.lock().unwrap().is_empty()).then_some(()) }).await.unwrap();
    drop(s);
    assert!(app_connection_ended(&seen).await, "the router closed its app connection once the client had gone");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_after_plain_requests_goes_to_the_general_path() {
    let env = Env::new("lean-general");
    let _app = support::app::start(&env.home, Spec::new("shop", "main", 3000, 10)).await;
    let r = Router::start(env.config()).await;
    let host = r.url_host("shop.localhost");
    let mut s = connect(&r).await;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    read_until(&mut s, "\"tag\"", WAIT).await;
    let post = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\ncontent-length: 3\r\n\r\nabc");
    s.write_all(post.as_bytes()).await.unwrap();
    let got = read_until(&mut s, "\r\n\r\n3", WAIT).await;
    assert!(got.contains("200 OK"), "{got}");
    s.write_all(format!("GET /again HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let got = read_until(&mut s, "/again", WAIT).await;
    assert!(got.contains("x-agentfs-hops"), "served on the same connection after the hand-over: {got}");
    r.stop().await.unwrap();
}

/// Everything the router sends on a fresh connection for `path`, to its close.
async fn until_closed(r: &Router, path: &str) -> String {
    let mut s = connect(r).await;
    s.write_all(get(path, &r.url_host("shop.localhost")).as_bytes()).await.unwrap();
    to_close(&mut s).await
}

/// The rest of what the router sends on `s`, once it closes the connection.
async fn to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("the router closes the connection").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the app saw its connection from the router end, within `WAIT`.
async fn app_connection_ended(seen: &Seen) -> bool {
    support::poll(WAIT, || async { (seen.ended.load(Ordering::SeqCst) == 1).then_some(()) }).await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_to_eof_bad_answers_and_cut_bodies_end_the_connection() {
    let (_env, r, seen) = setup("lean-bad").await;
    let got = until_closed(&r, "/close").await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("connection: close\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nuntil close"), "{got}");
    let got = until_closed(&r, "/garbage").await;
    assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
    assert!(got.contains("shop (main) port 3000") && got.contains("malformed response head"), "{got}");
    let got = until_closed(&r, "/short").await;
    assert!(got.ends_with("\r\n\r\nhalf"), "what came is passed on, then the connection ends: {got}");
    let got = until_closed(&r, "/hangup").await;
    assert!(got.contains("502 Bad Gateway") && got.contains("closed the connection without answering"), "{got}");
    let sent = seen.heads.lock().unwrap().iter().filter(|h| h.starts_with("GET /hangup")).count();
    assert_eq!(sent, 1, "a request the app received is not sent again");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_frees_the_app_connection() {
    let (_env, r, seen) = setup("lean-hold").await;
    let mut s = connect(&r).await;
    s.write_all(get("/hold", &r.url_host("shop.localhost")).as_bytes()).await.unwrap();
    read_until(&mut s, "hello", WAIT).await;
    drop(s);
    assert!(app_connection_ended(&seen).await, "the router closed its app connection once the client had gone");
    r.stop().await.unwrap();
}

/// A half-close reads as a client that left (as with hyper and nginx), but
/// not while requests it sent before are still to be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_then_a_half_close_get_the_answers_in_hand() {
    let (_env, r, _seen) = setup("lean-half").await;
    let host = r.url_host("shop.localhost");
    let mut s = connect(&r).await;
    s.write_all(format!("{}{}", get("/len", &host), get("/len", &host)).as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let got = to_close(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("\r\n\r\nhello"), "{got}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_at_once_not_after_the_header_timeout() {
    let (_env, r, _seen) = setup("lean-garbage").await;
    let mut s = connect(&r).await;
    // Binary garbage that is not a TLS record (0x16 is TLS: tests/https.rs).
    s.write_all(b"\x01\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n").await.unwrap();
    let got = read_until(&mut s, "\r\n\r\n", Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_arrives_as_the_router_stops_is_served() {
    let (_env, r, _seen) = setup("lean-stop").await;
    let (host, port) = (r.url_host("shop.localhost"), r.port);
    let mut s = connect(&r).await;
    // A later connection answered: the listener accepts in order, so `s`
    // has been accepted too (one still in the listen backlog when the
    // listener closes is reset, which is not what this test is about).
    let mut later = connect(&r).await;
    later.write_all(get("/len", &host).as_bytes()).await.unwrap();
    let first = read_until(&mut later, "hello", WAIT).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    let stopping = tokio::spawn(r.stop());
    let refused =
        support::poll(WAIT, || async { TcpStream::connect(("127.0.0.1", port)).await.is_err().then_some(()) }).await;
    assert!(refused.is_some(), "the router stopped accepting");
    s.write_all(get("/len", &host).as_bytes()).await.unwrap();
    let got = to_close(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("hello"), "{got}");
    stopping.await.unwrap().unwrap();
}
