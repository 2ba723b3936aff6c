//! The app's own port keeps working outside the instance, with real
//! programs: `localhost:3000` answers the first instance that took 3000, then
//! the next, then nobody (and the port is free again); `redis-cli -p P` reaches
//! a wrapped redis-server; inside an instance, another instance's port is
//! refused as if the instance ran alone.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const START: Duration = Duration::from_secs(30);

fn node_on(env: &Env, dir: &TempDir, instance: &str, port: u16) -> Proc {
    let server = fixture("node_server.js");
    let args = ["--name", "app", "--instance", instance, "--", "node", server.to_str().unwrap(), &port.to_string()];
    let p = wrap_in(env, dir.path(), &args);
    wait_stderr(&p, &format!("agentfs: app ({instance}) →"), START);
    p
}

/// The instance that answers `http://localhost:<port>/`, if any.
fn answers(port: u16) -> Option<String> {
    let r = get_tcp(port, &format!("localhost:{port}"), "/", &[]).ok().filter(|r| r.status == 200)?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["instance"].as_str().map(str::to_owned)
}

#[test]
fn localhost_port_means_the_first_app_that_took_it() {
    let env = Env::new("orignode");
    let dir = TempDir::new("orignode");
    let port = free_port();
    let mut a = node_on(&env, &dir, "a", port);
    wait_stderr(&a, &format!("also http://localhost:{port}"), START);
    let mut b = node_on(&env, &dir, "b", port);
    wait_stderr(&b, &format!("localhost:{port} answers a.app"), START);
    assert_eq!(wait_for("localhost:port to answer", START, || answers(port)), "a");
    let named = get_tcp(port, &format!("b.app.localhost:{port}"), "/", &[]).unwrap();
    assert!(named.body.contains("\"instance\":\"b\""), "{named:?}");
    assert!(named.head.to_ascii_lowercase().contains("x-agentfs-instance: b.app"), "{}", named.head);

    a.signal(libc::SIGTERM);
    a.wait(Duration::from_secs(10));
    wait_for("b to answer localhost:port", Duration::from_secs(1), || (answers(port)? == "b").then_some(()));
    b.signal(libc::SIGTERM);
    b.wait(Duration::from_secs(10));
    let gone = Instant::now();
    wait_for("the port to be given back", Duration::from_secs(1), || {
        TcpStream::connect(("127.0.0.1", port)).is_err().then_some(())
    });
    assert!(gone.elapsed() < Duration::from_millis(500), "given back after {:?}", gone.elapsed());
    let mut plain = Command::new("python3");
    clean_env(&mut plain);
    plain.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"]).current_dir(dir.path());
    let native = Proc::spawn(plain);
    wait_for("python3 -m http.server outside agentfs to take the port", START, || {
        get_tcp(port, "localhost", "/", &[]).ok().filter(|r| r.status == 200)
    });
    native.signal(libc::SIGTERM);
}

#[test]
fn redis_cli_reaches_a_wrapped_redis_server_on_its_port() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        return eprintln!("skipped: redis-server is not installed (.ci/run installs it)");
    }
    let env = Env::new("redis");
    let dir = TempDir::new("redis");
    let port = free_port().to_string();
    let args = ["--name", "cache", "--instance", "main", "--", "redis-server", "--port", &port, "--save", ""];
    let p = wrap_in(&env, dir.path(), &args);
    let banner = wait_stderr(&p, "agentfs: cache (main) →", START);
    assert!(banner.contains(&format!("port {port}: not HTTP")), "the banner says it is no URL: {banner}");
    assert!(banner.contains(&format!("also http://localhost:{port}")), "{banner}");
    let files = env.home.run_files();
    assert!(files.iter().any(|f| f.starts_with(&format!("cache.main.{port}."))), "converted: {files:?}");
    let pong = wait_for("redis-cli ping", START, || {
        let out = Command::new("redis-cli").args(["-p", &port, "ping"]).output().ok()?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (said == "PONG").then_some(said)
    });
    assert_eq!(pong, "PONG");
    let set = Command::new("redis-cli").args(["-p", &port, "set", "k", "through agentfs"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    let get = Command::new("redis-cli").args(["-p", &port, "get", "k"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "through agentfs");
}

#[test]
fn a_port_another_program_holds_is_not_mirrored_and_ps_says_why() {
    let env = Env::new("origheld");
    let dir = TempDir::new("origheld");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let app = node_on(&env, &dir, "main", port);
    let said = wait_stderr(&app, "is not mirrored", START);
    assert!(
        said.contains(&format!("localhost:{port} is not mirrored (in use by pid {}", std::process::id())),
        "{said}"
    );
    assert_eq!(env.wait_routed("app.localhost", START).status, 200, "the instance still works through the router");
    let ps = env.run(&["ps", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    let o = &rows[0]["original_port"];
    assert_eq!((o["port"].as_u64(), o["mirrored"].as_bool()), (Some(u64::from(port)), Some(false)), "{rows}");
    assert!(o["reason"].as_str().unwrap().contains("in use by pid"), "{rows}");
    let log = std::fs::read_to_string(env.home.path().join("logs/router.log")).unwrap();
    assert!(log.contains("original port not mirrored") && log.contains(&port.to_string()), "{log}");
}

#[test]
fn webpack_dev_servers_baked_in_port_reaches_its_instance() {
    let env = Env::new("wds");
    let dir = TempDir::new("wdsproj");
    let proj = dir.path().join("wds");
    std::fs::create_dir_all(proj.join("src")).unwrap();
    let port = free_port();
    std::fs::write(proj.join("package.json"), r#"{"name":"wds","private":true,"scripts":{"dev":"webpack serve"}}"#)
        .unwrap();
    let config = format!(
        "module.exports = {{ mode: 'development', entry: './src/index.js', \
         devServer: {{ port: {port}, hot: false, liveReload: true }} }};"
    );
    std::fs::write(proj.join("webpack.config.js"), config).unwrap();
    std::fs::write(proj.join("src/index.js"), "document.title = 'wds here';").unwrap();
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "webpack", "webpack-cli", "webpack-dev-server"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(install.status.success(), "npm install: {}", String::from_utf8_lossy(&install.stderr));
    let app = wrap_in(&env, &proj, &["--instance", "br", "--", "npm", "run", "dev"]);
    wait_stderr(&app, "agentfs: wds (br) →", Duration::from_secs(60));
    let bundle = wait_for("the bundle through the router", START, || {
        env.get("br.wds.localhost", "/main.js").ok().filter(|r| r.status == 200)
    });
    // The client connects to the page's host name on the port baked into the bundle.
    let baked = format!("port={port}&pathname=%2Fws");
    assert!(bundle.body.contains(&baked), "the bundle bakes in {baked}");
    let mut ws = TcpStream::connect(("127.0.0.1", port)).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: br.wds.localhost:{port}\r\nOrigin: http://br.wds.localhost:{}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        env.port
    );
    std::io::Write::write_all(&mut ws, req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"type\":\"ok\"") && !String::from_utf8_lossy(&got).contains("hash")
    {
        let n = std::io::Read::read(&mut ws, &mut buf).unwrap_or(0);
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-agentfs-instance: br.wds"), "{text}");
}

/// `connect(127.0.0.1:<port>)` from a process of `instance` of app `app`: the errno name, or "ok".
fn connect_from(env: &Env, instance: &str, port: u16, extra_env: &[(&str, &str)]) -> String {
    let code = format!(
        "import errno, socket\ns = socket.socket()\nr = s.connect_ex(('127.0.0.1', {port}))\nprint(errno.errorcode.get(r, 'ok'))"
    );
    let mut cmd = env.home.wrapped("app", instance, "python3");
    cmd.env_remove("AGENTFS_DEBUG").args(["-c", &code]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn inside_an_instance_another_instances_port_is_refused() {
    let env = Env::new("origin");
    let dir = TempDir::new("origin");
    let port = free_port();
    let _a = node_on(&env, &dir, "a", port);
    wait_for("the router to mirror the port", START, || answers(port));
    assert_eq!(connect_from(&env, "a", port, &[]), "ok", "its own listener");
    assert_eq!(connect_from(&env, "b", port, &[]), "ECONNREFUSED", "as if b ran alone");
    assert_eq!(
        connect_from(&env, "b", port, &[("AGENTFS_ORIGINAL_PORTS", "0")]),
        "ok",
        "the rule is off with the feature"
    );
    let free = free_port();
    assert_eq!(connect_from(&env, "b", free, &[]), "ECONNREFUSED", "nothing there: the kernel's answer");
}

#[test]
fn a_second_instances_redis_is_reached_only_from_inside_it() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        return eprintln!("skipped: redis-server is not installed (.ci/run installs it)");
    }
    let env = Env::new("redis2");
    let dir = TempDir::new("redis2");
    let port = free_port().to_string();
    let mut servers = Vec::new();
    for inst in ["one", "two"] {
        let args = ["--name", "cache", "--instance", inst, "--", "redis-server", "--port", &port, "--save", ""];
        let p = wrap_in(&env, dir.path(), &args);
        wait_stderr(&p, &format!("agentfs: cache ({inst}) →"), START);
        servers.push(p);
    }
    let cli = |instance: Option<&str>, args: &[&str]| {
        let mut c = match instance {
            Some(i) => env.home.wrapped("cache", i, "redis-cli"),
            None => Command::new("redis-cli"),
        };
        c.env_remove("AGENTFS_DEBUG").args(["-p", &port]).args(args);
        String::from_utf8_lossy(&c.output().unwrap().stdout).trim().to_owned()
    };
    wait_for("redis-cli ping", START, || (cli(None, &["ping"]) == "PONG").then_some(()));
    assert_eq!(cli(Some("two"), &["set", "who", "two"]), "OK");
    assert_eq!(cli(None, &["set", "who", "one"]), "OK", "outside: the first instance's redis");
    assert_eq!(cli(Some("two"), &["get", "who"]), "two", "inside two: its own redis");
    assert_eq!(cli(Some("one"), &["get", "who"]), "one");
}

#[test]
fn a_server_that_speaks_first_is_reached_through_its_port() {
    let env = Env::new("greeter");
    let dir = TempDir::new("greeter");
    let port = free_port();
    let code = [
        "import socket".to_owned(),
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)".to_owned(),
        format!("s.bind(('127.0.0.1', {port})); s.listen()"),
        "while True:".to_owned(),
        "    c, _ = s.accept(); c.sendall(b'220 greeter ready\\r\\n'); c.recv(100); c.close()".to_owned(),
    ]
    .join("\n");
    let p = wrap_in(&env, dir.path(), &["--name", "mail", "--instance", "main", "--", "python3", "-c", &code]);
    wait_stderr(&p, "agentfs: mail (main) →", START);
    let greeting = wait_for("the greeting through the router's port", START, || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut s, &mut buf).ok()?; // the client says nothing first
        std::io::Write::write_all(&mut s, b"QUIT\r\n").ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert_eq!(greeting, "220 greeter ready\r\n");
    assert!(env.home.run_files().iter().any(|f| f.starts_with(&format!("mail.main.{port}."))), "converted");
}
