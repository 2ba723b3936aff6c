//! Bad input never panics or hangs the router: junk files in run/ are
//! skipped (and logged), an unsafe home is refused at start with the fix.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

use agentfs_registry::HomeError;
use agentfs_router::{RouterError, client};
use support::app::{self, Spec};
use support::http::tag;
use support::{Env, Router, blocking};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_in_run_is_skipped() {
    let env = Env::new("junk");
    let run = env.run_dir();
    std::fs::write(run.join("bad.main.3000.json"), b"{ not json").unwrap();
    std::fs::write(run.join("file.main.3000.sock"), b"not a socket").unwrap();
    std::fs::create_dir(run.join("dir.main.3000.sock")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        run.join("fifo.main.3000.sock"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::write(run.join("big.main.3000.json"), vec![b' '; 2 * 1024 * 1024]).unwrap();
    std::fs::write(run.join("h-0123456789abcdef.sock"), b"").unwrap();
    std::fs::write(run.join("x.main.wrapper-1.json"), b"[]").unwrap();
    std::fs::write(run.join(std::ffi::OsStr::from_bytes(b"\xff\xfe.main.1.json")), b"{}").unwrap();
    let ghost = app::start(&env.home, Spec::new("ghost", "main", 3000, 1)).await;
    let mut sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("ghost.main.3000.json")).unwrap()).unwrap();
    sc["socket"] = "/etc/passwd".into();
    std::fs::write(run.join("ghost.main.3000.json"), sc.to_string()).unwrap();
    let good = app::start(&env.home, Spec::new("good", "main", 3000, 2)).await;

    let r = Router::start(env.config()).await;
    assert_eq!(tag(r.port, "good.localhost").await, good.stem);
    let h = env.home.clone();
    let (status, routes) = blocking(move || (client::rescan(&h).unwrap(), client::routes(&h).unwrap())).await;
    assert_eq!(status.listeners, 1, "only the good app is routed");
    assert_eq!(routes.apps.len(), 1);
    assert_eq!(ghost.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_home_is_refused_with_the_fix() {
    let env = Env::new("unsafe");
    std::fs::set_permissions(env.run_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = agentfs_router::serve(env.config(), async {}).await.unwrap_err();
    assert!(matches!(err, RouterError::Home(HomeError::Writable { .. })), "{err}");
    assert!(err.to_string().contains("chmod 700"), "{err}");
    assert!(!env.home.router_sock().exists() && !env.home.router_pid().exists());
}

#[tokio::test]
async fn a_port_another_program_holds_on_either_family_is_refused() {
    let env = Env::new("family");
    let mut config = env.config();
    for holder in ["[::1]:0", "127.0.0.1:0"] {
        let other = std::net::TcpListener::bind(holder).unwrap();
        let taken = other.local_addr().unwrap().port();
        config.port = Some(taken);
        let err = agentfs_router::serve(config.clone(), async {}).await.unwrap_err();
        assert!(matches!(&err, RouterError::Listen { port, .. } if *port == taken), "{err}");
        let line = err.to_string();
        assert!(line.contains("in use by another program") && line.contains("--port"), "{line}");
        assert!(!env.home.router_pid().exists(), "no pidfile left behind");
    }
}
