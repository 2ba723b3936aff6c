//! Acceptance 1: the Host grammar — app, instance, port label, default
//! instance, replicas round-robin, failover past a dead replica — and static
//! routes (socket, host:port, port) winning over discovered ones.

mod support;

use std::collections::HashSet;

use agentfs_registry::Home;
use agentfs_router::client;
use support::app::{self, Spec};
use support::http::{Conn, get, tag};
use support::{Env, Router, blocking};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_grammar_default_instance_and_port_label() {
    let env = Env::new("grammar");
    let h = &env.home;
    let _main3000 = app::start(h, Spec::new("shop", "main", 3000, 10)).await;
    let _main8080 = app::start(h, Spec::new("shop", "main", 8080, 20)).await;
    let _feat3000 = app::start(h, Spec::new("shop", "feat-x", 3000, 30)).await;
    let _feat5173 = app::start(h, Spec::new("shop", "feat-x", 5173, 5)).await;
    let r = Router::start(env.config()).await;
    let p = r.port;

    assert_eq!(tag(p, &r.url_host("feat-x.shop.localhost")).await, "shop.feat-x.5173", "primary = first listened");
    assert_eq!(tag(p, &r.url_host("3000.feat-x.shop.localhost")).await, "shop.feat-x.3000");
    assert_eq!(tag(p, "shop.localhost").await, "shop.feat-x.5173", "default = earliest-started instance");
    assert_eq!(tag(p, "main.shop.localhost").await, "shop.main.3000");
    assert_eq!(tag(p, "8080.main.shop.localhost").await, "shop.main.8080");
    assert_eq!(tag(p, "3000.shop.localhost").await, "shop.feat-x.3000", "port label on the default instance");
    assert_eq!(tag(p, "MAIN.Shop.LocalHost.").await, "shop.main.3000", "case and trailing dot");
    assert_eq!(get(p, "9999.main.shop.localhost", "/", &[]).await.status, 404);
    assert_eq!(get(p, "nope.shop.localhost", "/", &[]).await.status, 404);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_round_robin_and_fail_over_past_a_dead_one() {
    let env = Env::new("replicas");
    let h = &env.home;
    let a = app::start(h, Spec::new("api", "main", 8000, 10)).await;
    let mut spec = Spec::new("api", "main", 8000, 20);
    spec.replica = Some((std::process::id(), 1));
    let b = app::start(h, spec).await;
    let r = Router::start(env.config()).await;

    let mut conn = Conn::open(r.port).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let got = conn.get("api.localhost", "/", &[]).await;
        seen.push(got.json()["tag"].as_str().unwrap().to_owned());
    }
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 2, "both replicas serve: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "round-robin alternates: {seen:?}");

    b.kill();
    for i in 0..6 {
        let got = conn.get("api.localhost", "/", &[]).await;
        assert_eq!(got.status, 200, "request {i} after a replica died: {}", got.body);
        assert_eq!(got.json()["tag"], a.stem);
    }
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_routes_win_and_reach_sockets_and_tcp_ports() {
    let env = Env::new("static");
    let h = &env.home;
    let discovered = app::start(h, Spec::new("docs", "main", 4000, 10)).await;
    let other = app::start_unix(&env.dir.join("other.sock"), "other").await;
    let r = Router::start(env.config()).await;
    let home: Home = h.clone();
    assert_eq!(tag(r.port, "docs.localhost").await, discovered.stem);

    let sock = other.sock.display().to_string();
    let hh = home.clone();
    blocking(move || client::put_static(&hh, "docs.localhost", &sock, false)).await.unwrap();
    assert_eq!(tag(r.port, "docs.localhost").await, other.stem, "a static route wins over discovery");

    let (tcp_port, _tcp_app) = app::start_tcp("tcp-app").await;
    for (host, target) in [("port.localhost", tcp_port.to_string()), ("tcp.localhost", format!("127.0.0.1:{tcp_port}"))]
    {
        let hh = home.clone();
        blocking(move || client::put_static(&hh, host, &target, false)).await.unwrap();
        assert_eq!(tag(r.port, host).await, "tcp-app", "{host}");
    }
    r.stop().await.unwrap();
}
