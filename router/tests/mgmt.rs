//! Acceptance 8 and 10: every management verb works through the blocking
//! client; `router.sock` is 0600; a peer of another uid is refused; a
//! restart brings back static routes and discovered instances without any
//! app restarting.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use agentfs_router::client::{self, ClientError};
use agentfs_router::{RouterError, pidfile};
use support::app::{self, Spec};
use support::http::{get, tag};
use support::{Env, Router, blocking};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_works() {
    let env = Env::new("verbs");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let h = env.home.clone();
    let sock = env.dir.join("static.sock").display().to_string();
    let (status, routes, put, puts, del, del_again, bad) = blocking(move || {
        let status = client::status(&h).unwrap();
        let routes = client::routes(&h).unwrap();
        let put = client::put_static(&h, "Api.Localhost", &sock, false).unwrap();
        let puts = client::routes(&h).unwrap();
        let del = client::delete_static(&h, "api.localhost");
        let del_again = client::delete_static(&h, "api.localhost");
        let bad = client::put_static(&h, "evil.example", "3000", false);
        (status, routes, put, puts, del, del_again, bad)
    })
    .await;
    assert_eq!(status.pid, std::process::id());
    assert_eq!(status.port, r.port);
    assert_eq!(status.listeners, 1);
    assert!(status.listening.contains(&format!("127.0.0.1:{}", r.port)), "{:?}", status.listening);
    assert_eq!(routes.apps[0].instances[0].ports[0].targets, vec![a.sock.display().to_string()]);
    assert_eq!(put.host, "api.localhost");
    assert_eq!(puts.static_routes[0].host, "api.localhost");
    assert!(del.is_ok());
    assert!(matches!(del_again, Err(ClientError::Api { status: 404, .. })), "{del_again:?}");
    assert!(matches!(bad, Err(ClientError::Api { status: 400, .. })), "{bad:?}");
    assert!(std::fs::read_to_string(env.home.routes_file()).unwrap().contains("\"routes\": {}"));

    let h = env.home.clone();
    let refused = blocking(move || {
        let router_sock = h.router_sock().display().to_string();
        let run_sock = h.run_dir().join("shop.main.3000.sock").display().to_string();
        let targets = [router_sock.as_str(), run_sock.as_str(), "/etc/passwd", "169.254.169.254:80", "10.1.2.3:80"];
        let refused = targets.map(|t| (t.to_owned(), client::put_static(&h, "x.localhost", t, false)));
        let remote = client::put_static(&h, "lan.localhost", "10.1.2.3:80", true);
        let metadata = client::put_static(&h, "md.localhost", "169.254.169.254:80", true);
        (refused, remote, metadata)
    })
    .await;
    for (target, answer) in &refused.0 {
        assert!(matches!(answer, Err(ClientError::Api { status: 400, .. })), "{target}: {answer:?}");
    }
    assert!(refused.1.is_ok(), "a LAN target with --allow-remote: {:?}", refused.1);
    assert!(matches!(refused.2, Err(ClientError::Api { status: 400, .. })), "link-local never: {:?}", refused.2);

    std::fs::remove_file(&a.sock).unwrap();
    let h = env.home.clone();
    let after = blocking(move || client::rescan(&h)).await.unwrap();
    assert_eq!(after.listeners, 0, "rescan sees the socket gone");

    let h = env.home.clone();
    blocking(move || client::shutdown(&h)).await.unwrap();
    let stopped = support::poll(Duration::from_secs(10), || async {
        (!support::exists(&env.home.router_sock()) && !support::exists(&env.home.router_pid())).then_some(())
    })
    .await;
    assert!(stopped.is_some(), "POST /v1/shutdown stops the router and removes its files");
    r.stop().await.unwrap();
    let h = env.home.clone();
    assert!(matches!(blocking(move || client::status(&h)).await, Err(ClientError::NotRunning(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_sock_is_private_and_other_uids_are_refused() {
    let env = Env::new("peer");
    let r = Router::start(env.config()).await;
    let sock = env.home.router_sock();
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(pidfile::running(&env.home), Some(std::process::id()));
    if !rustix::process::geteuid().is_root() {
        return eprintln!("skipped the other-uid part: needs root to setuid");
    }
    let as_nobody = |sock: std::path::PathBuf| {
        let code = r#"
import os, socket, sys
os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-error", e.errno); sys.exit(0)
s.sendall(b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
print(data.decode().split("\r\n")[0])
"#;
        let out = std::process::Command::new("python3").args(["-c", code, sock.to_str().unwrap()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let s = sock.clone();
    let denied = blocking(move || as_nobody(s)).await;
    assert!(denied.starts_with("connect-error 13"), "mode 0600 keeps others out: {denied}");

    for dir in [env.dir.clone(), env.home.root().to_owned()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let s = sock.clone();
    let refused = blocking(move || as_nobody(s)).await;
    assert_eq!(refused, "HTTP/1.1 403 Forbidden", "the peer-uid check refuses even a reachable socket");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_router_on_the_same_home_is_refused() {
    let env = Env::new("twice");
    let r = Router::start(env.config()).await;
    let second = agentfs_router::serve(env.config(), async {}).await;
    assert!(matches!(second, Err(RouterError::AlreadyRunning { pid }) if pid == std::process::id()), "{second:?}");
    assert_eq!(tag_status(&env).await, r.port, "the first keeps running");
    r.stop().await.unwrap();
}

async fn tag_status(env: &Env) -> u16 {
    let h = env.home.clone();
    blocking(move || client::status(&h).unwrap().port).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_back_static_and_discovered_routes() {
    let env = Env::new("restart");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let (tcp_port, _tcp) = app::start_tcp("tcp-app").await;
    let r = Router::start(env.config()).await;
    let port = r.port;
    let h = env.home.clone();
    blocking(move || client::put_static(&h, "api.localhost", &tcp_port.to_string(), false)).await.unwrap();
    assert_eq!(tag(port, "shop.localhost").await, a.stem);
    r.stop().await.unwrap();
    assert!(get_refused(port).await, "the router is gone");

    let mut config = env.config();
    config.port = Some(port);
    let r = Router::start(config).await;
    assert_eq!(tag(port, "shop.localhost").await, a.stem, "discovered again from run/");
    assert_eq!(tag(port, "api.localhost").await, "tcp-app", "static route back from routes.json");
    assert_eq!(a.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 2, "the same app process served both");
    r.stop().await.unwrap();
}

async fn get_refused(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_json_matches_the_api() {
    let env = Env::new("dashapi");
    let _a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let h = env.home.clone();
    let api = blocking(move || client::routes(&h)).await.unwrap();
    let dash: agentfs_router::api::RoutesView =
        serde_json::from_str(&get(r.port, "localhost", "/api/routes", &[]).await.body).unwrap();
    assert_eq!(api, dash);
    r.stop().await.unwrap();
}
