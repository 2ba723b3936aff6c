//! Checks that need the router as a separate process (`harness = false`):
//! this executable runs the router itself when `AGENTFS_ROUTER_TEST_CHILD`
//! is set, and otherwise runs the checks, spawning itself as the router.
//! - Acceptance 9: SIGTERM while a slow request is in flight — the request
//!   completes, new connections are refused, exit status 0.
//! - Acceptance 3: a 200 MB upload streams through while the router's RSS
//!   grows by less than 32 MB.
//! - SIGHUP rescans; `pidfile::terminate` stops the verified router.

mod support;

use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use agentfs_registry::Home;
use agentfs_router::{Config, client};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::app::{self, ChannelBody, Spec};
use support::http::get;
use support::{Env, blocking, exists};
use tokio::net::TcpStream;

const CHILD: &str = "AGENTFS_ROUTER_TEST_CHILD";

type Check = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

fn main() -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return child_router();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let checks: [(&str, Check); 3] = [
        ("sigterm_drains_in_flight_refuses_new_and_exits_0", || Box::pin(sigterm_drain())),
        ("upload_of_200_mb_streams_with_small_rss_growth", || Box::pin(upload_rss())),
        ("sighup_rescans_and_pidfile_terminate_stops", || Box::pin(sighup_rescans())),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(check()))).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok { passed += 1 } else { failed += 1 }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The router, as `agentfs router run` would run it.
fn child_router() -> ExitCode {
    let home = Home::from_env().expect("AGENTFS_HOME");
    let mut config = Config::from_env(home).expect("config");
    config.port = Some(0);
    if let Some(secs) = std::env::var("AGENTFS_TEST_RESCAN_SECS").ok().and_then(|s| s.parse().ok()) {
        config.rescan_interval = Duration::from_secs(secs);
    }
    match agentfs_router::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("router: {e}");
            ExitCode::FAILURE
        }
    }
}

struct RouterProcess {
    child: Child,
    port: u16,
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_router(env: &Env, drain_secs: u32) -> RouterProcess {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .env("AGENTFS_TEST_RESCAN_SECS", "3600")
        .env("AGENTFS_HOME", env.home.root())
        .env("AGENTFS_DRAIN_TIMEOUT_SECS", drain_secs.to_string())
        .spawn()
        .unwrap();
    let pid = child.id();
    let h = env.home.clone();
    let status = support::poll(Duration::from_secs(20), || {
        let h = h.clone();
        async move { blocking(move || client::status(&h).ok()).await }
    })
    .await
    .expect("the router process answers its API");
    assert_eq!(status.pid, pid);
    RouterProcess { child, port: status.port }
}

fn sigterm(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the router did not exit within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn sigterm_drain() {
    let env = Env::new("term");
    let a = app::start(&env.home, Spec::new("slow", "main", 3000, 1)).await;
    let mut router = spawn_router(&env, 10).await;
    let port = router.port;
    let got = a.ctl.got.notified();
    let in_flight = tokio::spawn(async move { get(port, "slow.localhost", "/slow", &[]).await });
    got.await;

    sigterm(router.child.id());
    let refused = support::poll(Duration::from_secs(5), || async move {
        TcpStream::connect(("127.0.0.1", port)).await.is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "new connections are refused once draining");
    assert!(!in_flight.is_finished(), "the slow request is still in flight");
    assert!(router.child.try_wait().unwrap().is_none(), "the router waits for it");

    a.ctl.release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!((res.status.as_u16(), res.body.as_str()), (200, "slow done"));
    let status = wait_exit(&mut router.child, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!exists(&env.home.router_sock()) && !exists(&env.home.router_pid()), "files removed");
    assert!(exists(&a.sock), "the app's files are not touched");
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn upload_rss() {
    const TOTAL: usize = 200 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let env = Env::new("rss");
    let _a = app::start(&env.home, Spec::new("up", "main", 3000, 1)).await;
    let mut router = spawn_router(&env, 10).await;
    let pid = router.child.id();
    for _ in 0..20 {
        assert_eq!(get(router.port, "up.localhost", "/", &[]).await.status, 200);
    }
    let before = rss_kb(pid, "VmRSS:");

    let stream = TcpStream::connect(("127.0.0.1", router.port)).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (chunks, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let req = Request::post("/upload")
        .header("host", "up.localhost")
        .header("content-length", TOTAL.to_string())
        .body(ChannelBody(rx))
        .unwrap();
    let sender = tokio::spawn(async move {
        let chunk = Bytes::from(vec![42u8; CHUNK]);
        for _ in 0..TOTAL / CHUNK {
            chunks.send(chunk.clone()).await.unwrap();
        }
    });
    let started = Instant::now();
    let res = tx.send_request(req).await.unwrap();
    sender.await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), TOTAL.to_string(), "every byte arrived");
    let peak = rss_kb(pid, "VmHWM:");
    let growth_mb = peak.saturating_sub(before) as f64 / 1024.0;
    println!(
        "200 MB upload in {:?}: RSS before {} kB, peak {} kB, growth {growth_mb:.1} MB",
        started.elapsed(),
        before,
        peak
    );
    assert!(growth_mb < 32.0, "RSS grew by {growth_mb:.1} MB");
    sigterm(pid);
    assert_eq!(wait_exit(&mut router.child, Duration::from_secs(10)).await.code(), Some(0));
}

async fn sighup_rescans() {
    let env = Env::new("hup");
    let mut router = spawn_router(&env, 10).await;
    let port = router.port;
    let mut bare = Spec::new("bare", "main", 3000, 1);
    bare.sidecar = false;
    let a = app::start(&env.home, bare).await;
    assert_eq!(get(port, "bare.localhost", "/", &[]).await.status, 404, "socket creation alone is no signal");
    let pid = rustix::process::Pid::from_raw(router.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let live = support::poll(Duration::from_secs(5), || async move {
        (get(port, "bare.localhost", "/", &[]).await.status == 200).then_some(())
    })
    .await;
    assert!(live.is_some(), "SIGHUP rescans run/ and finds the bare socket");
    assert_eq!(a.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    let h = env.home.clone();
    let signalled = blocking(move || agentfs_router::pidfile::terminate(&h).unwrap()).await;
    assert_eq!(signalled, Some(router.child.id()));
    assert_eq!(wait_exit(&mut router.child, Duration::from_secs(10)).await.code(), Some(0));
    let h = env.home.clone();
    assert_eq!(blocking(move || agentfs_router::pidfile::terminate(&h).unwrap()).await, None, "nothing to signal");
}
