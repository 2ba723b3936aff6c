//! The apps' original ports: while an instance holds a converted port P the
//! router answers `localhost:P` too — HTTP by Host, then Origin/Referer, then
//! the earliest holder; other protocols tunnelled to the earliest holder —
//! and gives P back when the last holder goes.

mod support;

use std::time::{Duration, Instant};

use agentfs_registry::{record, scan};
use agentfs_router::client;
use support::app::{self, App, Spec};
use support::http::{raw, read_until};
use support::{Env, Router, blocking};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET /` on `127.0.0.1:port` with these headers: (status, tag, x-agentfs-instance).
async fn get_on(port: u16, host: &str, extra: &str) -> (String, String, String) {
    let req = format!("GET / HTTP/1.1\r\nhost: {host}\r\n{extra}connection: close\r\n\r\n");
    if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        return Default::default(); // not mirrored (yet)
    }
    let got = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
    let status = got.split(' ').nth(1).unwrap_or("").to_owned();
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    let instance = head.lines().find_map(|l| l.strip_prefix("x-agentfs-instance: ")).unwrap_or("").to_owned();
    let tag = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["tag"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, tag, instance)
}

async fn wait_for_tag(port: u16, host: &str, want: &str, within: Duration) {
    let got = support::poll(within, || async { (get_on(port, host, "").await.1 == want).then_some(()) }).await;
    assert!(got.is_some(), "{host} on port {port} did not answer {want} within {within:?}");
}

fn gone(env: &Env, a: &App) {
    a.kill();
    let _ = std::fs::remove_file(&a.sock);
    let _ = std::fs::remove_file(scan::sidecar_path(&env.run_dir(), &a.stem));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_port_answers_the_first_holder_then_the_next_then_nobody() {
    let env = Env::new("orig");
    let p = free_port();
    let a = app::start(&env.home, Spec::new("app", "a", p, 1)).await;
    let b = app::start(&env.home, Spec::new("app", "b", p, 2)).await;
    let r = Router::start(env.config()).await;
    wait_for_tag(p, &format!("localhost:{p}"), &a.stem, Duration::from_secs(2)).await;
    assert_eq!(get_on(p, &format!("127.0.0.1:{p}"), "").await.2, "a.app");
    let v6 = TcpStream::connect(("::1", p)).await;
    assert!(v6.is_ok(), "[::1]:{p} is mirrored too");

    assert_eq!(get_on(p, &format!("b.app.localhost:{p}"), "").await.1, b.stem, "by Host");
    let origin = format!("origin: http://b.app.localhost:{}\r\n", r.port);
    assert_eq!(get_on(p, &format!("localhost:{p}"), &origin).await.1, b.stem, "by Origin");
    let referer = format!("referer: http://b.app.localhost:{}/page\r\n", r.port);
    assert_eq!(get_on(p, &format!("localhost:{p}"), &referer).await.1, b.stem, "by Referer");
    assert_eq!(get_on(p, "evil.com", "").await.0, "421");
    let page = support::http::get(r.port, "localhost", "/", &[("accept", "text/html")]).await.body;
    assert!(page.contains(&format!("<code>localhost:{p}</code> → a.app")), "the dashboard says it: {page}");

    gone(&env, &a);
    wait_for_tag(p, &format!("localhost:{p}"), &b.stem, Duration::from_secs(1)).await;
    gone(&env, &b);
    let started = Instant::now();
    let released = support::poll(Duration::from_millis(500), || async {
        TcpStream::connect(("127.0.0.1", p)).await.is_err().then_some(())
    })
    .await;
    assert!(released.is_some(), "port {p} still answers after its last holder went");
    assert!(started.elapsed() < Duration::from_millis(300), "released after {:?}", started.elapsed());
    let freed = std::net::TcpListener::bind(("127.0.0.1", p));
    assert!(freed.is_ok(), "another program can take port {p} again: {freed:?}");
    r.stop().await.unwrap();
}

/// Instances a (started first) and b of `app` on one free port, and a router that mirrors it.
async fn two_instances(env: &Env) -> (u16, App, App, Router) {
    let p = free_port();
    let a = app::start(&env.home, Spec::new("app", "a", p, 1)).await;
    let b = app::start(&env.home, Spec::new("app", "b", p, 2)).await;
    let r = Router::start(env.config()).await;
    wait_for_tag(p, &format!("b.app.localhost:{p}"), &b.stem, Duration::from_secs(2)).await;
    (p, a, b, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preconnected_socket_that_speaks_http_late_is_still_routed_by_host() {
    let env = Env::new("origlate");
    let (p, _a, b, r) = two_instances(&env).await;
    // A browser's speculative preconnect: silent past the sniffing wait, then a request.
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let req = format!("GET / HTTP/1.1\r\nhost: b.app.localhost:{p}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let got = read_until(&mut s, "\"tag\"", Duration::from_secs(5)).await;
    assert!(got.contains(&b.stem) && got.contains("x-agentfs-instance: b.app"), "{got}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_on_the_original_port_reaches_the_named_instance() {
    let env = Env::new("origws");
    let (p, _a, b, r) = two_instances(&env).await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    let req =
        format!("GET /ws HTTP/1.1\r\nhost: b.app.localhost:{p}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_until(&mut s, &format!("hello from {}", b.stem), Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    read_until(&mut s, "ping", Duration::from_secs(5)).await;
    r.stop().await.unwrap();
}

/// A raw (not HTTP) server on a converted port: greets first, then echoes.
fn start_raw_app(env: &Env, instance: &str, port: u16, started: u64) -> tokio::task::JoinHandle<()> {
    let stem = format!("raw.{instance}.{port}");
    let path = scan::socket_path(&env.run_dir(), &stem);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let spec = Spec::new("raw", instance, port, started);
    record::write(&scan::sidecar_path(&env.run_dir(), &stem), &app::sidecar(&spec, &path)).unwrap();
    let greeting = format!("+hello from {instance}\r\n");
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else { return };
            let greeting = greeting.clone();
            tokio::spawn(async move {
                let _ = c.write_all(greeting.as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 || c.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocols_are_tunnelled_to_the_first_holder() {
    let env = Env::new("origraw");
    let p = free_port();
    let _a = start_raw_app(&env, "a", p, 1);
    let _b = start_raw_app(&env, "b", p, 2);
    let r = Router::start(env.config()).await;
    let up = support::poll(Duration::from_secs(2), || async { TcpStream::connect(("127.0.0.1", p)).await.ok() }).await;
    let mut silent = up.expect("mirrored");
    let greeted = read_until(&mut silent, "+hello from a", Duration::from_secs(5)).await;
    assert_eq!(greeted, "+hello from a\r\n", "a client that waits for the server's greeting");
    let mut talker = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    talker.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    read_until(&mut talker, "PING", Duration::from_secs(5)).await;
    drop((silent, talker));
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_another_program_holds_is_skipped_and_said() {
    let env = Env::new("origheld");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = holder.local_addr().unwrap().port();
    let a = app::start(&env.home, Spec::new("app", "a", p, 1)).await;
    let r = Router::start(env.config()).await;
    assert_eq!(support::http::tag(r.port, "app.localhost").await, a.stem, "the router's port still works");
    let h = env.home.clone();
    let view = blocking(move || client::routes(&h).unwrap()).await;
    let o = view.original_ports.iter().find(|o| o.port == p).expect("listed");
    assert!(!o.mirrored, "{o:?}");
    let reason = o.reason.as_deref().unwrap_or("");
    assert!(reason.contains(&format!("pid {}", std::process::id())), "{reason}");
    r.stop().await.unwrap();

    let mut config = env.config();
    config.original_ports = false;
    drop(holder);
    let r = Router::start(config).await;
    r.rescan().await;
    assert!(TcpStream::connect(("127.0.0.1", p)).await.is_err(), "AGENTFS_ORIGINAL_PORTS=0: nothing on {p}");
    r.stop().await.unwrap();
}
