//! A socket bound in one process and listened on in others (issue 16,
//! acceptance 5): uvicorn binds in its parent and hands the socket to spawned
//! workers (`--workers`, `--reload`); Node cluster's primary binds and its
//! workers listen (`NODE_CLUSTER_SCHED_POLICY=none`) or the primary listens
//! and hands out connections (the default). Each is routed, serves HTTP and a
//! WebSocket, reloads, and leaves nothing in run/ when stopped.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const START: Duration = Duration::from_secs(60);

const FASTAPI_APP: &str = "from fastapi import FastAPI, WebSocket\n\
app = FastAPI()\n\
@app.get('/')\n\
def root():\n    return {'v': 1}\n\
@app.websocket('/ws')\n\
async def ws(sock: WebSocket):\n    await sock.accept()\n    msg = await sock.receive_text()\n    \
await sock.send_text('echo:' + msg)\n    await sock.close()\n";

fn require_uvicorn() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import uvicorn, fastapi, websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need uvicorn, fastapi and websockets: python3 -m pip install uvicorn fastapi websockets (.ci/run does)"
    );
}

/// A WebSocket handshake to `host` through the router, one text frame
/// sent, the echo read back.
fn ws_echo(port: u16, host: &str, text: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during the handshake: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
    // A masked text frame (client to server), mask 0.
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    s.write_all(&frame).unwrap();
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).unwrap();
    let mut payload = vec![0u8; usize::from(hdr[1] & 0x7f)];
    s.read_exact(&mut payload).unwrap();
    String::from_utf8_lossy(&payload).into_owned()
}

/// Stops the wrapper with `sig`, checks the exit (the command's: uvicorn
/// exits 0 on SIGINT) and that run/ is left empty.
fn stop_and_check_clean(env: &Env, mut app: Proc, sig: i32, code: i32) {
    app.signal(sig);
    let status = app.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(code), "exit of the wrapper; output:\n{}", app.output());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.home.run_files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = env.home.run_files();
    assert!(left.is_empty(), "left in run/ 5 s after the wrapper exited: {left:?}\n{}", app.output());
}

fn uvicorn(env: &Env, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--name", name, "--instance", "main", "--", "python3", "-m", "uvicorn", "app:app"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--port", "8000"]);
    wrap_in(env, dir, &args)
}

#[test]
fn uvicorn_workers_serve_http_and_websockets_and_leave_nothing() {
    require_uvicorn();
    let env = Env::new("uvw");
    let dir = TempDir::new("uvw");
    std::fs::write(dir.path().join("app.py"), FASTAPI_APP).unwrap();
    let app = uvicorn(&env, dir.path(), "uvw", &["--workers", "2"]);
    let r = env.wait_routed("main.uvw.localhost", START);
    assert!(r.body.contains("\"v\":1"), "{}", r.body);
    assert_eq!(ws_echo(env.port, "main.uvw.localhost", "hi"), "echo:hi");
    let sc = env.home.sidecar("uvw.main.8000");
    let pid = sc["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the sidecar names a live worker: {sc}");
    stop_and_check_clean(&env, app, libc::SIGINT, 0);
}

#[test]
fn uvicorn_reload_serves_the_edit() {
    require_uvicorn();
    let env = Env::new("uvr");
    let dir = TempDir::new("uvr");
    std::fs::write(dir.path().join("app.py"), FASTAPI_APP).unwrap();
    let app = uvicorn(&env, dir.path(), "uvr", &["--reload"]);
    env.wait_routed("main.uvr.localhost", START);
    assert_eq!(ws_echo(env.port, "main.uvr.localhost", "one"), "echo:one");
    // uvicorn's StatReload takes the files' first mtimes 0.25 s after it
    // started the server, which may be after a fast server was routed and
    // the edit made (then the edit is its baseline and never reloads): the
    // edit is written again every 2 s until it is served.
    let mut written: Option<Instant> = None;
    wait_for("the edit to be served", START, || {
        if written.is_none_or(|w| w.elapsed() >= Duration::from_secs(2)) {
            std::fs::write(dir.path().join("app.py"), FASTAPI_APP.replace("'v': 1", "'v': 2")).unwrap();
            written = Some(Instant::now());
        }
        env.get("main.uvr.localhost", "/").ok().filter(|r| r.status == 200 && r.body.contains("\"v\":2"))
    });
    assert_eq!(ws_echo(env.port, "main.uvr.localhost", "two"), "echo:two");
    stop_and_check_clean(&env, app, libc::SIGINT, 0);
}

const CLUSTER: &str = "const cluster = require('node:cluster'); const http = require('node:http');\n\
if (cluster.isPrimary) { for (let i = 0; i < 2; i++) cluster.fork(); }\n\
else { http.createServer((q, r) => r.end('worker ' + process.pid + '\\n')).listen(3000); }\n";

/// The parent pid of `pid`, from /proc.
fn ppid(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn node_cluster_is_routed_with_either_policy_and_keeps_its_name() {
    let env = Env::new("ncl");
    let dir = TempDir::new("ncl");
    std::fs::write(dir.path().join("cluster.js"), CLUSTER).unwrap();
    let mut url = None;
    for policy in ["none", "rr", "none"] {
        let mut cmd = env.agentfs(&["wrap", "--name", "ncl", "--", "node", "cluster.js"]);
        cmd.current_dir(dir.path()).env("NODE_CLUSTER_SCHED_POLICY", policy);
        let app = Proc::spawn(cmd);
        let banner = wait_stderr(&app, "→", START);
        let this = banner.split("→ ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
        assert_eq!(url.get_or_insert_with(|| this.clone()), &this, "the instance keeps its name ({policy})");
        let sidecar = wait_for("the sidecar", START, || {
            env.home.run_files().into_iter().find(|f| f.starts_with("ncl.") && f.ends_with(".3000.json"))
        });
        let announced = Instant::now();
        env.wait_routed("ncl.localhost", START);
        let first = announced.elapsed();
        assert!(first < Duration::from_secs(1), "first 200 {first:?} after the sidecar ({policy})");
        let sc = env.home.sidecar(sidecar.trim_end_matches(".json"));
        let pid = sc["pid"].as_u64().unwrap();
        let parent = ppid(pid);
        let wrapper = u64::from(app.pid());
        match policy {
            "none" => assert_ne!(parent, wrapper, "policy none: a worker listens and is named: {sc}"),
            _ => assert_eq!(parent, wrapper, "round robin: the primary listens and is named: {sc}"),
        }
        stop_and_check_clean(&env, app, libc::SIGTERM, 143);
    }
}
