//! Acceptance 4: Host and Origin arrive unchanged, X-Forwarded-* are set,
//! hop-by-hop headers are stripped both ways, and a loop gets a 508.

mod support;

use agentfs_router::client;
use support::app::{self, Spec};
use support::http::get;
use support::{Env, Router, blocking};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_pass_unchanged_forwarded_set_hop_by_hop_stripped() {
    let env = Env::new("headers");
    let _a = app::start(&env.home, Spec::new("shop", "main", 3000, 10)).await;
    let r = Router::start(env.config()).await;
    let host = r.url_host("main.shop.localhost");
    let origin = format!("http://{host}");
    let got = get(
        r.port,
        &host,
        "/path?q=1",
        &[
            ("origin", &origin),
            ("connection", "keep-alive, x-conn-private"),
            ("x-conn-private", "drop me"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = got.json();
    let h = &seen["headers"];
    assert_eq!(h["host"], host.as_str(), "Host unchanged");
    assert_eq!(h["origin"], origin.as_str(), "Origin unchanged");
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], host.as_str());
    assert_eq!(h["x-forwarded-port"], r.port.to_string().as_str());
    assert_eq!(h["x-agentfs-hops"], "1");
    for gone in ["x-conn-private", "keep-alive", "proxy-connection", "te"] {
        assert!(h.get(gone).is_none(), "{gone} must not reach the app: {h}");
    }
    assert_ne!(h.get("connection").and_then(|v| v.as_str()), Some("keep-alive, x-conn-private"));
    assert_eq!(seen["uri"], "/path?q=1");
    assert!(got.headers.get("x-app-private").is_none(), "headers named by the app's Connection are stripped");
    assert!(got.headers.get("keep-alive").is_none());
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_back_to_the_router_ends_in_508() {
    let env = Env::new("loop");
    let r = Router::start(env.config()).await;
    let (h, target) = (env.home.clone(), format!("127.0.0.1:{}", r.port));
    blocking(move || client::put_static(&h, "loop.localhost", &target, false)).await.unwrap();
    let got = get(r.port, "loop.localhost", "/", &[("accept", "application/json")]).await;
    assert_eq!(got.status, 508, "{}", got.body);
    assert_eq!(got.json()["error"], "loop detected");
    let got = get(r.port, "loop.localhost", "/", &[("x-agentfs-hops", "5")]).await;
    assert_eq!(got.status, 508, "a request that already made 5 hops is not forwarded");
    r.stop().await.unwrap();
}
