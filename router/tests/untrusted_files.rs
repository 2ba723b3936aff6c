//! What lands in `run/` and the home directory is not trusted: a home or
//! `run/` opened to others while the router runs lets nothing new in;
//! another user's sidecar, or a TCP route to another user's listener, is
//! never routed and is named in the log; FIFOs under the names the router
//! reads hang nothing; a socket whose process was killed is swept; `run/`
//! replaced is watched again; an oversized `routes.json` is not read.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentfs_registry::record;
use agentfs_router::client;
use support::app::{self, Spec};
use support::http::{get, tag};
use support::{Env, Router, blocking, logs};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
}

async fn wait_logged(needle: &str) -> Vec<String> {
    let found = support::poll(Duration::from_secs(5), || async {
        let lines = logs::lines_with(needle);
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    found.unwrap_or_else(|| panic!("nothing logged about {needle}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_run_dir_and_a_foreign_sidecar_take_nothing_over() {
    logs::capture();
    if !is_root() {
        return eprintln!("skipped: needs root to give a sidecar to another uid");
    }
    let env = Env::new("takeover");
    let good = app::start(&env.home, Spec::new("shop", "main", 3000, 100)).await;
    let r = Router::start(env.config()).await;
    assert_eq!(tag(r.port, "shop.localhost").await, good.stem);

    // Another user's server, and a sidecar of theirs that would make it the
    // default instance of shop (started earlier) — in a run/ anyone may write.
    let (evil_port, evil) = app::start_tcp("evil").await;
    std::fs::set_permissions(env.run_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut sc = app::sidecar(&Spec::new("shop", "evil", 3000, 1), Path::new("/unused"));
    sc.socket = None;
    sc.tcp = Some(([127, 0, 0, 1], evil_port).into());
    let path = env.run_dir().join("shop.evil.3000.json");
    record::write(&path, &sc).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    r.rescan().await;

    assert_eq!(tag(r.port, "shop.localhost").await, good.stem, "the good app is still the default");
    assert_eq!(get(r.port, "evil.shop.localhost", "/", &[]).await.status, 404);
    assert_eq!(evil.ctl.hits.load(Ordering::SeqCst), 0, "nothing reached the other user's server");
    let late = app::start(&env.home, Spec::new("late", "main", 3000, 200)).await;
    r.rescan().await;
    assert_eq!(get(r.port, "late.localhost", "/", &[]).await.status, 404, "nothing new while run/ is open");
    let named = wait_logged(&path.display().to_string()).await;
    assert!(named[0].contains("belongs to uid 65534"), "{named:?}");
    wait_logged("refusing new routes").await;

    std::fs::set_permissions(env.run_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    r.rescan().await;
    wait_logged("private again").await;
    assert_eq!(tag(r.port, "shop.localhost").await, good.stem, "still refused once run/ is private again");
    assert_eq!(tag(r.port, "late.localhost").await, late.stem, "our own new app is routed again");
    assert_eq!(get(r.port, "evil.shop.localhost", "/", &[]).await.status, 404);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_to_another_users_listener_is_refused() {
    logs::capture();
    if !is_root() || !Path::new("/proc/net/tcp").exists() {
        return eprintln!("skipped: needs root (a listener of another uid) and Linux's /proc/net/tcp");
    }
    let env = Env::new("foreigntcp");
    let mut theirs = std::process::Command::new("python3")
        .args(["-c", "import os, socket, sys\nos.setgid(65534); os.setuid(65534)\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\nprint(s.getsockname()[1], flush=True); sys.stdin.read()"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(theirs.stdout.take().unwrap()), &mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let mut sc = app::sidecar(&Spec::new("gofer", "main", 8000, 1), Path::new("/unused"));
    sc.socket = None;
    sc.tcp = Some(([127, 0, 0, 1], port).into());
    let path = env.run_dir().join("gofer.main.8000.json");
    record::write(&path, &sc).unwrap();
    let r = Router::start(env.config()).await;
    assert_eq!(get(r.port, "gofer.localhost", "/", &[]).await.status, 404);
    let named = wait_logged(&path.display().to_string()).await;
    assert!(named.iter().any(|l| l.contains("belongs to uid 65534")), "{named:?}");
    r.stop().await.unwrap();
    let _ = theirs.kill();
    let _ = theirs.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_under_the_names_the_router_reads_hang_nothing() {
    logs::capture();
    let env = Env::new("fifos");
    let good = app::start(&env.home, Spec::new("good", "main", 3000, 1)).await;
    let fifos = [
        env.run_dir().join("shop.main.3000.json"),
        env.run_dir().join("shop.main.wrapper-1.json"),
        env.home.routes_file(),
    ];
    for f in &fifos {
        mkfifo(f);
    }
    let r = tokio::time::timeout(Duration::from_secs(5), Router::start(env.config())).await.expect("starts");
    let h = env.home.clone();
    let rescan = tokio::time::timeout(Duration::from_secs(2), blocking(move || client::rescan(&h)));
    assert!(rescan.await.expect("a rescan returns within 2 s").is_ok());
    assert_eq!(tag(r.port, "good.localhost").await, good.stem);
    for f in &fifos {
        let named = wait_logged(&f.display().to_string()).await;
        assert!(named[0].contains("not a regular file"), "{named:?}");
    }
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_of_a_killed_app_that_bound_it_itself_is_swept() {
    if !Path::new("/proc/net/unix").exists() {
        return eprintln!("skipped: needs Linux's /proc/net/unix");
    }
    let env = Env::new("bare");
    let sock = env.run_dir().join("shop.bare.80.sock");
    // An app that binds $AGENTFS_SOCKET itself: no sidecar, no pid in the name.
    let code = "import os, socket, sys, time\ns = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n\
                t = time.time() - 60; os.utime(sys.argv[1], (t, t))\nprint('up', flush=True)\n\
                while True:\n    c, _ = s.accept(); c.recv(65536)\n    c.sendall(b'HTTP/1.1 200 OK\\r\\ncontent-length: 4\\r\\n\\r\\nbare'); c.close()";
    let mut app = std::process::Command::new("python3")
        .args(["-c", code])
        .arg(&sock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(app.stdout.take().unwrap()), &mut line).unwrap();
    let r = Router::start(env.config()).await;
    assert_eq!(get(r.port, "bare.shop.localhost", "/", &[]).await.body, "bare");
    let _ = app.kill(); // SIGKILL: the socket file stays behind
    let _ = app.wait();
    assert!(sock.exists());
    r.rescan().await;
    assert!(!sock.exists(), "the dead app's socket is removed on the next scan");
    assert_eq!(get(r.port, "bare.shop.localhost", "/", &[]).await.status, 404, "and its route is gone");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_renamed_into_run_after_its_bind_is_kept() {
    let env = Env::new("renamed");
    let elsewhere = env.dir.join("shop.moved.80.sock");
    let listener = std::os::unix::net::UnixListener::bind(&elsewhere).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        &elsewhere,
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec {
                tv_sec: old.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64,
                tv_nsec: 0,
            },
        },
        rustix::fs::AtFlags::empty(),
    );
    let moved = env.run_dir().join("shop.moved.80.sock");
    std::fs::rename(&elsewhere, &moved).unwrap();
    let r = Router::start(env.config()).await;
    r.rescan().await;
    r.rescan().await;
    assert!(moved.exists(), "a live socket bound under another name is not swept");
    let h = env.home.clone();
    let routes = blocking(move || client::routes(&h).unwrap()).await;
    assert_eq!(routes.apps.len(), 1, "{routes:?}");
    drop(listener);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_run_dir_is_watched_again() {
    let env = Env::new("rewatch");
    let mut config = env.config();
    config.rescan_interval = Duration::from_secs(3600); // only the watch can find the app
    let r = Router::start(config).await;
    for round in 0..2 {
        std::fs::remove_dir_all(env.run_dir()).unwrap();
        // (The router, scanning after the removal, may have made it again already.)
        agentfs_registry::home::ensure_private_dir(&env.run_dir()).unwrap();
        r.rescan().await; // the replacement is seen; from now on only the new run/'s watch tells
        let a = app::start(&env.home, Spec::new("shop", "main", 3000 + round, 1)).await;
        let found = support::poll(Duration::from_secs(2), || async {
            let got = get(r.port, "shop.localhost", "/", &[]).await;
            (got.status == 200).then(|| got.json()["tag"].as_str().unwrap().to_owned())
        })
        .await;
        assert_eq!(found.as_deref(), Some(a.stem.as_str()), "round {round}: found through the new run/'s watch");
    }
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_routes_file_is_not_read_and_the_last_good_routes_stay() {
    logs::capture();
    let env = Env::new("bigroutes");
    let (tcp_port, _tcp) = app::start_tcp("static-app").await;
    let r = Router::start(env.config()).await;
    let h = env.home.clone();
    blocking(move || client::put_static(&h, "api.localhost", &tcp_port.to_string(), false)).await.unwrap();
    let file = env.home.routes_file();
    let mut big = std::fs::read(&file).unwrap();
    big.extend(std::iter::repeat_n(b' ', 5 * 1024 * 1024));
    std::fs::write(&file, big).unwrap();
    r.rescan().await;
    assert_eq!(tag(r.port, "api.localhost").await, "static-app");
    let named = wait_logged(&file.display().to_string()).await;
    assert!(named.iter().any(|l| l.contains("more than")), "{named:?}");
    r.stop().await.unwrap();
}
