//! `agentfs` as a user runs it: wrap real programs (python3, node, npm, Vite,
//! a static binary), route them through the router it starts, list them,
//! static routes, the router's lifecycle, doctor, help, and bad input.
//! How `wrap` behaves like the command it wraps is in `wrap.rs`.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(30);

#[test]
fn wrap_routes_an_unmodified_server_and_starts_the_router() {
    let env = Env::new("wrap");
    let dir = TempDir::new("proj");
    let shop = dir.path().join("shop");
    std::fs::create_dir(&shop).unwrap();
    std::fs::write(shop.join("index.html"), "hello shop").unwrap();
    assert!(env.router_pid().is_none());
    let app = wrap_in(&env, &shop, &["--instance", "main", "--", "python3", "-m", "http.server", "8000"]);
    let err = wait_stderr(&app, "agentfs: shop (main) → ", START);
    assert!(err.contains(&format!("http://main.shop.localhost:{}", env.port)), "{err}");
    assert!(err.contains("started the router"), "{err}");
    assert_eq!(env.get("shop.localhost", "/").unwrap().body, "hello shop");
    assert_eq!(env.get("main.shop.localhost", "/").unwrap().body, "hello shop");
    assert!(env.router_pid().is_some());
}

#[test]
fn worktrees_of_one_app_on_one_port_each_get_their_host() {
    let env = Env::new("worktrees");
    let dir = TempDir::new("repo");
    let trees = shop_repo(dir.path(), &["feat-x"]);
    let (main, feat) = (&trees[0], &trees[1]);

    let first = wrap_in(&env, main, &["--", "python3", "-m", "http.server", "3000"]);
    wait_stderr(&first, "agentfs: shop (main) →", START);
    let second = wrap_in(&env, feat, &["--", "python3", "-m", "http.server", "3000"]);
    wait_stderr(&second, "agentfs: shop (feat-x) →", START);
    assert_eq!(env.get("main.shop.localhost", "/index.html").unwrap().body, "main tree");
    assert_eq!(env.get("feat-x.shop.localhost", "/index.html").unwrap().body, "feat-x tree");
    assert_eq!(env.get("shop.localhost", "/index.html").unwrap().body, "main tree", "the first started is the default");
    let all = format!("{}{}", first.stderr(), second.stderr());
    assert!(!all.contains("Address already in use"), "{all}");
}

#[test]
fn npm_run_dev_with_a_hard_coded_port_is_routed() {
    let env = Env::new("npm");
    let dir = TempDir::new("npmproj");
    let proj = dir.path().join("web");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(
        proj.join("package.json"),
        r#"{"name":"@acme/storefront","private":true,"scripts":{"dev":"node server.js"}}"#,
    )
    .unwrap();
    std::fs::write(
        proj.join("server.js"),
        "require('http').createServer((q, s) => s.end('npm ok ' + q.socket.remoteAddress)).listen(3000);",
    )
    .unwrap();
    let app = wrap_in(&env, &proj, &["--instance", "dev", "--", "npm", "run", "dev"]);
    wait_stderr(&app, "agentfs: storefront (dev) →", Duration::from_secs(60));
    let r = env.wait_routed("storefront.localhost", START);
    assert_eq!(r.body, "npm ok ::1");
}

#[test]
fn a_real_vite_dev_server_is_routed_with_its_client() {
    let env = Env::new("vite");
    let dir = TempDir::new("viteproj");
    let proj = dir.path().join("site");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("package.json"), r#"{"name":"site","private":true,"scripts":{"dev":"vite"}}"#).unwrap();
    std::fs::write(
        proj.join("index.html"),
        "<!doctype html><title>vite here</title><script type=module src=/main.js></script>",
    )
    .unwrap();
    std::fs::write(proj.join("main.js"), "document.title = 'ran';").unwrap();
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "vite"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(install.status.success(), "npm install vite: {}", String::from_utf8_lossy(&install.stderr));
    let app = wrap_in(&env, &proj, &["--instance", "main", "--", "npm", "run", "dev"]);
    wait_stderr(&app, "agentfs: site (main) →", Duration::from_secs(60));
    let page = env.wait_routed("site.localhost", START);
    assert!(page.body.contains("vite here") && page.body.contains("/@vite/client"), "{}", page.body);
    let client = env.get("main.site.localhost", "/@vite/client").unwrap();
    assert_eq!(client.status, 200, "{client:?}");
    assert!(client.body.contains("WebSocket"), "the HMR client");
}

#[test]
fn ps_lists_instances_as_json_even_with_the_router_stopped() {
    let env = Env::new("ps");
    let dir = TempDir::new("ps");
    let app = wrap_in(
        &env,
        dir.path(),
        &["--name", "api", "--instance", "one", "--", "python3", "-m", "http.server", "8000"],
    );
    wait_stderr(&app, "agentfs: api (one) →", START);
    for router_running in [true, false] {
        let r = env.run(&["ps", "--json"]);
        assert_eq!(r.code, Some(0), "{r:?}");
        let rows: Value = serde_json::from_str(&r.stdout).unwrap();
        let row = &rows[0];
        assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
        assert_eq!(
            (row["app"].as_str(), row["instance"].as_str(), row["port"].as_u64()),
            (Some("api"), Some("one"), Some(8000))
        );
        assert!(row["pid"].as_u64().unwrap() > 0);
        assert_eq!(row["url"], format!("http://one.api.localhost:{}", env.port));
        assert!(row["socket"].as_str().unwrap().ends_with("/run/api.one.8000.sock"));
        assert!(row["started_at_ms"].as_u64().unwrap() > 0);
        assert_eq!(row["default"], true);
        if router_running {
            assert_eq!(env.run(&["router", "stop"]).code, Some(0));
        }
    }
    let table = env.run(&["ps"]);
    assert!(table.stdout.starts_with("APP") && table.stdout.contains("one.api.localhost"), "{table:?}");
}

#[test]
fn a_static_binary_is_routed_through_port() {
    let env = Env::new("static");
    let dir = TempDir::new("static");
    let exe = compile_c("static_server.c", dir.path(), &["-static"]);
    let args = ["--name", "gosvc", "--instance", "main", "--", exe.to_str().unwrap()];
    let app = wrap_in_with(&env, dir.path(), &args, &[NO_SECCOMP]);
    let err = wait_stderr(&app, "agentfs: gosvc (main) →", START);
    assert!(err.contains("cannot load the shim") && err.contains("PORT="), "{err}");
    assert_eq!(env.wait_routed("gosvc.localhost", START).body, "static hello\n");
    let ps: Value = serde_json::from_str(&env.run(&["ps", "--json"]).stdout).unwrap();
    assert!(ps[0]["socket"].as_str().unwrap().starts_with("tcp:127.0.0.1:"), "{ps}");
}

#[test]
fn static_routes_and_router_lifecycle_commands() {
    let env = Env::new("routes");
    let r = env.run(&["router", "stop"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stderr.contains("not running"), "{r:?}");
    let r = env.run(&["router", "start"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = env.run(&["router", "start"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stderr.contains("already running"), "{r:?}");

    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = backend.local_addr().unwrap().to_string();
    let serve = std::thread::spawn(move || {
        let (mut s, _) = backend.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut s, &mut buf);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nstatic").unwrap();
    });
    assert_eq!(env.run(&["route", "api.localhost", &target]).code, Some(0));
    assert_eq!(env.get("api.localhost", "/").unwrap().body, "static");
    serve.join().unwrap();
    let routes: Value = serde_json::from_slice(&std::fs::read(env.home.path().join("routes.json")).unwrap()).unwrap();
    assert_eq!(routes["routes"]["api.localhost"], target);
    assert_eq!(env.run(&["unroute", "api.localhost"]).code, Some(0));
    assert_eq!(env.get("api.localhost", "/").unwrap().status, 404);
    let r = env.run(&["unroute", "api.localhost"]);
    assert_eq!(r.code, Some(1), "{r:?}");

    assert_eq!(env.run(&["router", "stop"]).code, Some(0));
    assert_eq!(env.run(&["route", "db.localhost", "5432"]).code, Some(0), "works with the router down");
    let routes: Value = serde_json::from_slice(&std::fs::read(env.home.path().join("routes.json")).unwrap()).unwrap();
    assert_eq!(routes["routes"]["db.localhost"], "localhost:5432");
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failure_status() {
    let env = Env::new("errors");
    for args in [
        &["wrap"][..],
        &["wrap", "--bogus", "--", "true"],
        &["frobnicate"],
        &["route", "evil.example", "3000"],
        &["route", "a.localhost", "nope"],
    ] {
        let r = env.run(args);
        assert!(r.code.is_some_and(|c| c != 0), "{args:?}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("agentfs: "), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }

    let ro = TempDir::new("ro");
    std::fs::create_dir(ro.path().join("home")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ro.path().join("home"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = env.agentfs(&["wrap", "--no-router", "--", "true"]);
    cmd.env("AGENTFS_HOME", ro.path().join("home"));
    let mut p = Proc::spawn(cmd);
    let status = p.wait(START);
    assert!(!status.success());
    assert_eq!(p.stderr().trim().lines().count(), 1, "{}", p.output());
    assert!(p.stderr().contains("chmod 700"), "{}", p.output());

    let mut cmd = env.agentfs(&["wrap", "--no-router", "--", "true"]);
    cmd.env("AGENTFS_STOP_TIMEOUT_SECS", "soon");
    let mut p = Proc::spawn(cmd);
    assert!(!p.wait(START).success());
    assert_eq!(p.stderr().trim().lines().count(), 1, "{}", p.output());
    assert!(p.stderr().contains("bad AGENTFS_STOP_TIMEOUT_SECS \"soon\""), "{}", p.output());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = env.run(&["router", "start", "--port", &port]);
    assert!(r.code.is_some_and(|c| c != 0), "{r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(&port), "names the port: {r:?}");
}

#[test]
fn doctor_reports_each_check_and_judges_a_command() {
    let env = Env::new("doctor");
    let r = env.run(&["doctor"]);
    for needle in ["shim", "loads", "home", "router not running", "sun_path"] {
        assert!(r.stdout.contains(needle), "{needle}: {r:?}");
    }
    assert!(r.stdout.lines().all(|l| l.starts_with('✓') || l.starts_with('✗') || l.starts_with("  → ")), "{r:?}");
    let dir = TempDir::new("doctor");
    let exe = compile_c("static_server.c", dir.path(), &["-static"]);
    let r = env.run(&["doctor", "--", exe.to_str().unwrap()]);
    let handled = r.stdout.contains("PORT") || r.stdout.contains("seccomp interception");
    assert!(r.stdout.contains("statically linked") && handled, "{r:?}");
    let r = env.run(&["doctor", "--", "node"]);
    assert!(r.stdout.contains("dynamically linked"), "{r:?}");
    let r = env.run(&["doctor", "--", "no-such-program-xyz"]);
    assert!(r.stdout.contains("✗ no-such-program-xyz: not found"), "{r:?}");
    assert_eq!(r.code, Some(1));
}

#[test]
fn help_has_examples_and_completions_are_printed() {
    let env = Env::new("help");
    for cmd in ["wrap", "ps", "url", "route", "unroute", "doctor", "completions"] {
        let r = env.run(&[cmd, "--help"]);
        assert_eq!(r.code, Some(0), "{cmd}: {r:?}");
        assert!(r.stdout.contains("Example"), "{cmd} --help has examples: {}", r.stdout);
    }
    let r = env.run(&["completions", "bash"]);
    assert_eq!(r.code, Some(0));
    assert!(
        r.stdout.contains("complete -F") && r.stdout.contains("agentfs"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
}

/// Every command that prints state has `--json` with `"v":1` (the schemas
/// are in docs/json.md).
#[test]
fn every_state_command_prints_versioned_json() {
    let env = Env::new("json");
    let json_of = |args: &[&str], code: i32| -> Value {
        let r = env.run(args);
        assert_eq!(r.code, Some(code), "{args:?}: {r:?}");
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {r:?}"))
    };
    assert_eq!(json_of(&["router", "status", "--json"], 3), serde_json::json!({"v": 1, "running": false}));
    let route = json_of(&["route", "api.localhost", "9", "--json"], 0);
    assert_eq!((route["v"].clone(), route["host"].clone()), (1.into(), "api.localhost".into()), "{route}");
    assert_eq!(route["url"], format!("http://api.localhost:{}", env.port));
    let mut server = env.home.wrapped("shop", "main", "python3");
    server.args(["-m", "http.server", "8000"]);
    let server = Proc::spawn(server);
    wait_for("the server's socket", Duration::from_secs(20), || env.home.sock("shop.main.8000").exists().then_some(()));
    let ps = json_of(&["ps", "--json"], 0);
    assert!(ps.as_array().unwrap().iter().all(|r| r["v"] == 1), "{ps}");
    assert_eq!(json_of(&["url", "main.shop", "--json"], 0)["v"], 1);
    drop(server);
    let doctor = env.run(&["doctor", "--json"]);
    let doctor: Value = serde_json::from_str(&doctor.stdout).unwrap_or_else(|e| panic!("{e}: {doctor:?}"));
    assert_eq!(doctor["v"], 1);
    assert!(
        doctor["checks"].as_array().unwrap().iter().all(|c| c["ok"].is_boolean() && c["what"].is_string()),
        "{doctor}"
    );
    let trust = json_of(&["trust", "--status", "--json"], 0);
    assert_eq!((trust["v"].clone(), trust["https"].clone()), (1.into(), false.into()), "{trust}");
    let bare = env.run(&["trust", "--json"]);
    assert_eq!(bare.code, Some(2), "--json needs --status: {bare:?}");
}

/// `agentfs install --dry-run` prints the exact units it would write (user
/// units for unprivileged ports, system units otherwise) and changes
/// nothing; the macOS LaunchAgent (a golden file, checked by the unit tests)
/// is a plist that Python's plistlib reads, with loopback sockets only.
#[test]
fn install_dry_run_prints_the_units_and_writes_nothing() {
    let env = Env::new("install");
    let dir = TempDir::new("installhome");
    let run = |args: &[&str]| {
        let mut c = env.agentfs(args);
        c.env("HOME", dir.path());
        let mut p = Proc::spawn(c);
        let status = p.wait(Duration::from_secs(30));
        Finished { code: status.code(), stdout: p.stdout(), stderr: p.stderr() }
    };
    let r = run(&["install", "--dry-run", "--ports", "8080,8443"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let user = dir.path().join(".config/systemd/user");
    assert!(r.stdout.contains(&format!("# would write {}/agentfs-router.socket\n", user.display())), "{r:?}");
    for line in ["ListenStream=127.0.0.1:8080", "ListenStream=[::1]:8443", "BindIPv6Only=ipv6-only"] {
        assert!(r.stdout.contains(line), "{line}: {r:?}");
    }
    assert!(r.stdout.contains(&format!("ExecStart={} router run --log-file", agentfs())), "{r:?}");
    assert!(r.stdout.contains("# would run: systemctl --user enable --now agentfs-router.socket"), "{r:?}");
    assert!(!dir.path().join(".config").exists(), "a dry run writes nothing");
    let undo = run(&["uninstall", "--dry-run", "--ports", "8080"]);
    assert!(undo.stdout.contains("# would run: systemctl --user disable --now agentfs-router.socket"), "{undo:?}");

    let start: u32 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap().trim().parse().unwrap();
    if start > 80 {
        // Not a dry run: with a privileged port and no --system it prints and refuses.
        let low = run(&["install", "--ports", "80"]);
        assert_eq!(low.code, Some(1), "{low:?}");
        assert!(low.stdout.contains("# would write /etc/systemd/system/agentfs-router.service"), "{low:?}");
        assert!(low.stdout.contains("\nUser="), "the system service runs as the user: {low:?}");
        assert!(low.stderr.contains("--system") && low.stderr.lines().count() == 1, "{low:?}");
    }
    let plist = fixture("golden/dev.agentfs.router.plist");
    let check = "import plistlib, sys; p = plistlib.load(open(sys.argv[1], 'rb')); \
        nodes = [s['SockNodeName'] for g in p['Sockets'].values() for s in g]; \
        assert sorted(set(nodes)) == ['127.0.0.1', '::1'], nodes; assert p['RunAtLoad'] is True; print('ok')";
    let out = Command::new("python3").args(["-c", check]).arg(&plist).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{}", String::from_utf8_lossy(&out.stderr));
}

/// `agentfs --version`: the version and the commit it was built from.
#[test]
fn version_names_the_commit() {
    let env = Env::new("version");
    let v = env.run(&["--version"]);
    assert_eq!(v.code, Some(0), "{v:?}");
    let line = v.stdout.trim();
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let (version, commit) = line.strip_prefix("agentfs ").and_then(|r| r.split_once(' ')).expect(line);
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "{line}");
    let commit = commit.trim_start_matches('(').trim_end_matches(')');
    assert!(commit == head || commit == format!("{head}+dirty"), "{line} does not name {head}");
}
