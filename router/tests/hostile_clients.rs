//! Clients and apps at the edges: a burst of new connections to an app with
//! a tiny listen queue is served whole (as over TCP, where the SYN queue and
//! retransmits absorb it); two Host headers and a malformed chunked body are
//! the client's 400, not a guess or the app's 502; an idle management
//! connection is closed.

mod support;

use std::time::Duration;

use agentfs_registry::{record, scan};
use support::app::{self, Spec};
use support::http::raw;
use support::{Env, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app listening with a backlog of 1 that accepts one connection at a
/// time, answering each after a short pause: most of a burst finds its
/// queue full.
fn start_narrow_app(env: &Env) -> std::thread::JoinHandle<()> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, bind, listen, socket};
    let stem = "narrow.main.3000";
    let path = scan::socket_path(&env.run_dir(), stem);
    let fd = socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    listen(&fd, 1).unwrap();
    let spec = Spec::new("narrow", "main", 3000, 1);
    record::write(&scan::sidecar_path(&env.run_dir(), stem), &app::sidecar(&spec, &path)).unwrap();
    let listener = std::os::unix::net::UnixListener::from(fd);
    std::thread::spawn(move || {
        for _ in 0..100 {
            let Ok((mut c, _)) = listener.accept() else { return };
            std::thread::sleep(Duration::from_millis(2));
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            );
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_an_app_with_a_full_listen_queue_is_served_whole() {
    let env = Env::new("burst");
    let server = start_narrow_app(&env);
    let r = Router::start(env.config()).await;
    let port = r.port;
    let requests: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let got = raw(
                    port,
                    b"GET / HTTP/1.1\r\nhost: narrow.localhost\r\nconnection: close\r\n\r\n",
                    Duration::from_secs(10),
                )
                .await;
                got.split(' ').nth(1).unwrap_or("none").to_owned()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in requests {
        statuses.push(t.await.unwrap());
    }
    let served = statuses.iter().filter(|s| *s == "200").count();
    assert_eq!(served, 100, "{statuses:?}");
    server.join().unwrap();
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_and_a_broken_chunked_body_are_the_clients_400() {
    let env = Env::new("badreq");
    let _a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let limit = Duration::from_secs(5);
    let two_hosts = "GET / HTTP/1.1\r\nhost: shop.localhost\r\nhost: other.localhost\r\nconnection: close\r\n\r\n";
    assert!(raw(r.port, two_hosts.as_bytes(), limit).await.starts_with("HTTP/1.1 400"));
    let posted = "POST /upload HTTP/1.1\r\nhost: shop.localhost\r\nhost: shop.localhost\r\ncontent-length: 0\r\n\
                  connection: close\r\n\r\n";
    assert!(raw(r.port, posted.as_bytes(), limit).await.starts_with("HTTP/1.1 400"));
    let broken = "POST /upload HTTP/1.1\r\nhost: shop.localhost\r\ntransfer-encoding: chunked\r\n\r\n\
                  5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n";
    let answer = raw(r.port, broken.as_bytes(), limit).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed"), "{answer}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_management_connection_is_closed() {
    let env = Env::new("mgmtidle");
    let mut config = env.config();
    config.limits.header_read_timeout = Duration::from_millis(300);
    let r = Router::start(config).await;
    for sent in [&b""[..], b"GET /v1/status HTTP/1.1\r\nho"] {
        let mut s = tokio::net::UnixStream::connect(env.home.router_sock()).await.unwrap();
        s.write_all(sent).await.unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        assert!(closed.is_ok(), "still open after 3 s having sent {sent:?}");
    }
    r.stop().await.unwrap();
}
