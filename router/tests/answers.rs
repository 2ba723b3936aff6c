//! Acceptance 5 and the other own answers: 404 lists live apps (HTML, JSON,
//! text); `evil.example` and `app.localhost.evil.example` get 421 and never
//! reach an app; 503 wait-for-start; 502 names the socket; the dashboard.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentfs_registry::record::{self, VERSION, WrapperRecord};
use agentfs_registry::{Label, runfile};
use agentfs_router::client;
use support::app::{self, Spec};
use support::http::{get, raw, tag};
use support::{Env, Router};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_lists_live_apps_in_html_json_and_text() {
    let env = Env::new("404");
    let _a = app::start(&env.home, Spec::new("shop", "main", 3000, 10)).await;
    let r = Router::start(env.config()).await;
    let url = format!("http://main.shop.localhost:{}", r.port);

    let html = get(r.port, "nope.localhost", "/", &[("accept", "text/html,*/*;q=0.8")]).await;
    assert_eq!(html.status, 404);
    assert!(html.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(html.body.contains(&format!("href=\"{url}\"")), "{}", html.body);

    let json = get(r.port, "nope.localhost", "/", &[("accept", "application/json")]).await;
    assert_eq!(json.status, 404);
    let v = json.json();
    assert_eq!(v["apps"][0]["app"], "shop");
    assert_eq!(v["apps"][0]["instances"][0]["url"], url.as_str());

    let text = get(r.port, "nope.localhost", "/", &[]).await;
    assert!(text.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(text.body.contains(&url), "{}", text.body);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_get_421_and_never_reach_an_app() {
    let env = Env::new("421");
    let a = app::start(&env.home, Spec::new("app", "main", 3000, 10)).await;
    let r = Router::start(env.config()).await;
    for host in ["evil.example", "app.localhost.evil.example", "127.0.0.1", "[::1]"] {
        let got = get(r.port, &format!("{host}:{}", r.port), "/", &[("accept", "application/json")]).await;
        assert_eq!(got.status, 421, "{host}: {}", got.body);
    }
    let no_host = raw(r.port, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert!(no_host.starts_with("HTTP/1.0 400") || no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    assert_eq!(a.ctl.hits.load(Ordering::SeqCst), 0, "nothing was proxied");
    assert_eq!(tag(r.port, "app.localhost").await, "app.main.3000");
    r.stop().await.unwrap();
}

fn wrapper(env: &Env, app: &str, instance: &str, pid: u32) -> std::path::PathBuf {
    let (a, i) = (Label::parse(app).unwrap(), Label::parse(instance).unwrap());
    let path = env.run_dir().join(format!("{}.json", runfile::wrapper_stem(&a, &i, pid)));
    let w = WrapperRecord {
        v: VERSION,
        app: a,
        instance: i,
        wrapper_pid: pid,
        cmd: vec![],
        cwd: "/".into(),
        started_at_ms: 1,
        pgid: None,
        stop_timeout_secs: None,
        exits: Vec::new(),
        port: None,
        front_port: None,
    };
    record::write(&path, &w).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_instance_holds_the_request_until_it_listens() {
    let env = Env::new("503");
    wrapper(&env, "blog", "main", std::process::id());
    let r = Router::start(env.config()).await;
    let port = r.port;
    let started = Instant::now();
    let waiting = tokio::spawn(async move { get(port, "blog.localhost", "/", &[]).await });
    let h = env.home.clone();
    let is_waiting = || {
        let h = h.clone();
        async move { support::blocking(move || client::status(&h).unwrap().waiting_requests == 1).await.then_some(()) }
    };
    support::poll(Duration::from_secs(10), is_waiting).await.expect("the request waits in the router");
    assert!(!waiting.is_finished());
    let _a = app::start(&h, Spec::new("blog", "main", 4000, 10)).await;
    let got = waiting.await.unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["tag"], "blog.main.4000");
    assert!(started.elapsed() < Duration::from_secs(10));
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_never_listens_gets_503_and_a_dead_wrapper_404() {
    let env = Env::new("503b");
    let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    wrapper(&env, "blog", "main", sleeper.id());
    let mut config = env.config();
    config.start_wait = Duration::from_millis(300);
    let r = Router::start(config).await;
    let got = get(r.port, "blog.localhost", "/", &[("accept", "application/json")]).await;
    assert_eq!(got.status, 503, "{}", got.body);
    assert!(got.json()["message"].as_str().unwrap().contains(&sleeper.id().to_string()));
    assert_eq!(got.headers["retry-after"], "2");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let port = r.port;
    let gone = support::poll(Duration::from_secs(5), || async move {
        (get(port, "blog.localhost", "/", &[]).await.status == 404).then_some(())
    })
    .await;
    assert!(gone.is_some(), "a dead wrapper's instance is unknown again");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_does_not_answer_gets_502_naming_the_socket() {
    support::logs::capture();
    let env = Env::new("502");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 10)).await;
    let r = Router::start(env.config()).await;
    a.kill();
    let sock = a.sock.display().to_string();
    let got = get(r.port, "shop.localhost", "/", &[]).await;
    assert_eq!(got.status, 502, "{}", got.body);
    assert!(got.body.contains(&sock) && got.body.contains("refused"), "{}", got.body);
    let logged = support::logs::lines_with(&sock);
    assert!(logged.iter().any(|l| l.contains("answered") && l.contains("status=502")), "the 502 is logged: {logged:?}");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_on_localhost_and_agentfs_localhost() {
    let env = Env::new("dash");
    let _a = app::start(&env.home, Spec::new("shop", "main", 3000, 10)).await;
    let r = Router::start(env.config()).await;
    for host in ["localhost", "agentfs.localhost"] {
        let page = get(r.port, &r.url_host(host), "/", &[("accept", "text/html")]).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("main.shop.localhost"), "{}", page.body);
        let api = get(r.port, host, "/api/routes", &[]).await;
        assert_eq!(api.json()["apps"][0]["app"], "shop");
    }
    let post = raw(
        r.port,
        b"POST /api/routes HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    r.stop().await.unwrap();
}
