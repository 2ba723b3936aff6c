//! Acceptance 6 and 7: a sidecar appearing makes its route live fast; a
//! SIGKILLed app's route goes within a second and its files are removed;
//! sockets of another uid and symlinks in run/ are never routed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use agentfs_registry::record;
use agentfs_registry::scan;
use support::app::{self, Spec};
use support::http::{Conn, get, tag};
use support::{Env, Router, exists};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sidecar_is_routed_within_milliseconds() {
    let env = Env::new("disc");
    let r = Router::start(env.config()).await;
    let mut conn = Conn::open(r.port).await;
    let mut lat = Vec::new();
    for i in 0..100u16 {
        let app_name = format!("a{i}");
        let mut spec = Spec::new(&app_name, "main", 3000, 1);
        (spec.sidecar, spec.hashed) = (false, true);
        let a = app::start(&env.home, spec).await;
        assert_eq!(conn.get(&format!("{app_name}.localhost"), "/", &[]).await.status, 404, "no sidecar, no route yet");
        let t0 = Instant::now();
        let spec = Spec::new(&app_name, "main", 3000, 1);
        record::write(&scan::sidecar_path(&env.run_dir(), &a.stem), &app::sidecar(&spec, &a.sock)).unwrap();
        loop {
            let got = conn.get(&format!("{app_name}.localhost"), "/", &[]).await;
            if got.status == 200 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "route never went live");
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    let (p50, p99) = (lat[49], lat[98]);
    eprintln!("sidecar → routed: p50 {p50:?}, p99 {p99:?}");
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?}");
    assert!(p99 < Duration::from_millis(250), "p99 {p99:?} (target 50 ms, asserted loosely)");
    r.stop().await.unwrap();
}

/// A real app in another process: python3 serving HTTP on a Unix socket,
/// with a sidecar naming its pid.
fn python_app(env: &Env, stem: &str) -> Child {
    let sock = scan::socket_path(&env.run_dir(), stem);
    let code = r#"
import socketserver, http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"py"
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.UnixStreamServer):
    def get_request(self):
        r, _ = super().get_request(); return r, ("127.0.0.1", 0)
s = S(sys.argv[1], H)
print("listening", flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", code, sock.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    let spec = Spec::new("py", "main", 5000, 1);
    let mut sc = app::sidecar(&spec, &sock);
    sc.pid = child.id();
    record::write(&scan::sidecar_path(&env.run_dir(), stem), &sc).unwrap();
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_is_unrouted_within_a_second_and_its_files_removed() {
    let env = Env::new("kill");
    let mut child = python_app(&env, "py.main.5000");
    let r = Router::start(env.config()).await;
    let got = get(r.port, "py.localhost", "/", &[]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "py"));
    let (sock, json) =
        (scan::socket_path(&env.run_dir(), "py.main.5000"), scan::sidecar_path(&env.run_dir(), "py.main.5000"));

    let t0 = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    let port = r.port;
    let gone = support::poll(Duration::from_secs(1), || async {
        (get(port, "py.localhost", "/", &[]).await.status == 404 && !exists(&sock) && !exists(&json)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "route and files still there {:?} after SIGKILL", t0.elapsed());
    eprintln!("SIGKILL → route gone and files removed: {:?}", t0.elapsed());
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_sockets_and_symlinks_are_never_routed() {
    if !rustix::process::geteuid().is_root() {
        return eprintln!("skipped: needs root to chown a socket to another uid");
    }
    let env = Env::new("uid");
    let theirs = app::start(&env.home, Spec::new("theirs", "main", 3000, 1)).await;
    rustix::fs::chown(&theirs.sock, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
    let mut bare = Spec::new("bare", "main", 3000, 1);
    bare.sidecar = false;
    let bare = app::start(&env.home, bare).await;
    rustix::fs::chown(&bare.sock, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();

    let outside = env.dir.join("outside.sock");
    let real = tokio::net::UnixListener::bind(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&outside, env.run_dir().join("link.main.3000.sock")).unwrap();
    let ours = app::start(&env.home, Spec::new("ours", "main", 3000, 1)).await;

    let r = Router::start(env.config()).await;
    assert_eq!(tag(r.port, "ours.localhost").await, ours.stem);
    for host in ["theirs.localhost", "bare.localhost", "link.localhost"] {
        let got = get(r.port, host, "/", &[]).await;
        assert_eq!(got.status, 404, "{host} must not be routed: {}", got.body);
    }
    assert_eq!(theirs.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(bare.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(real);
    r.stop().await.unwrap();
}
