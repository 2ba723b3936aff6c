//! The shim under LD_PRELOAD with real programs (python3, node, C):
//! unmodified TCP servers listen on Unix sockets and never notice.

mod support;

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(20);

fn json_line(out: &str) -> Value {
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    serde_json::from_str(line).unwrap()
}

fn run_script(home: &Home, app: &str, inst: &str, program: &str, args: &[&str]) -> (Value, Proc) {
    let mut cmd = home.wrapped(app, inst, program);
    cmd.args(args);
    let mut p = Proc::spawn(cmd);
    let status = p.wait(START);
    assert!(status.success(), "{program} {args:?} failed: {status}\n{}", p.output());
    (json_line(&p.stdout()), p)
}

#[test]
fn python_http_server_serves_through_its_socket() {
    let home = Home::new("httpserver");
    let mut cmd = home.wrapped("shop", "main", "python3");
    cmd.args(["-m", "http.server", "8000"]).current_dir(fixture(""));
    let server = Proc::spawn(cmd);
    let sock = home.sock("shop.main.8000");
    wait_file(&home.run().join("shop.main.8000.json"), START);
    for _ in 0..3 {
        let r = get_unix(&sock, "/").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.contains("asyncio_server.py"), "directory listing of fixtures: {}", r.body);
    }
    let log = wait_for("3 request log lines", START, || {
        let e = server.stderr();
        (e.matches("\"GET / HTTP/1.0\" 200").count() >= 3).then_some(e)
    });
    assert!(!log.contains("Traceback"), "{log}");
    for line in log.lines().filter(|l| l.contains("GET /")) {
        let peer = line.split_whitespace().next().unwrap();
        assert!(peer == "127.0.0.1" || peer == "::1", "request log shows a loopback peer: {line}");
    }
    let sc = home.sidecar("shop.main.8000");
    assert_eq!(
        (sc["app"].as_str(), sc["instance"].as_str(), sc["port"].as_u64()),
        (Some("shop"), Some("main"), Some(8000))
    );
    assert_eq!(sc["pid"].as_u64(), Some(u64::from(server.pid())));
    assert_eq!(sc["socket"].as_str(), Some(sock.to_str().unwrap()));
}

#[test]
fn asyncio_server_answers_ten_of_ten() {
    let home = Home::new("asyncio");
    let mut cmd = home.wrapped("api", "main", "python3");
    cmd.arg(fixture("asyncio_server.py")).args(["127.0.0.1", "8001"]);
    let mut server = Proc::spawn(cmd);
    server.wait_stdout("READY", START);
    let sock = home.sock("api.main.8001");
    for i in 0..10 {
        let r = get_unix(&sock, "/").unwrap_or_else(|e| panic!("request {i}: {e}\n{}", server.output()));
        assert_eq!(r.status, 200, "request {i}: {r:?}\n{}", server.output());
        assert_eq!(r.body, "hello from main peer=127.0.0.1");
    }
}

#[test]
fn node_server_sees_tcp_addresses_and_options_succeed() {
    let home = Home::new("node");
    let mut cmd = home.wrapped("web", "main", "node");
    cmd.arg(fixture("node_server.js")).arg("3000");
    let mut server = Proc::spawn(cmd);
    let out = server.wait_stdout("LISTENING", START);
    let addr: Value = serde_json::from_str(out.lines().next().unwrap().trim_start_matches("LISTENING ")).unwrap();
    assert_eq!(addr, serde_json::json!({"address": "::", "family": "IPv6", "port": 3000}));
    let r = get_unix(&home.sock("web.main.3000"), "/").unwrap();
    let info: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info["remoteAddress"], "::1", "{info}");
    assert_eq!(info["remoteFamily"], "IPv6");
    assert_eq!(info["noDelay"], 0, "setNoDelay succeeded: {info}");
    assert_eq!(info["keepAlive"], 0, "setKeepAlive succeeded: {info}");
}

#[test]
fn node_close_then_listen_again_is_reachable() {
    let home = Home::new("relisten");
    let mut cmd = home.wrapped("web", "main", "node");
    cmd.arg(fixture("node_server.js")).arg("3000");
    let mut server = Proc::spawn(cmd);
    server.wait_stdout("LISTENING", START);
    let sock = home.sock("web.main.3000");
    assert_eq!(get_unix(&sock, "/relisten").unwrap().status, 200);
    server.wait_stdout("RELISTENED", START);
    for _ in 0..3 {
        let r = get_unix(&sock, "/").unwrap_or_else(|e| panic!("after re-listen: {e}\n{}", server.output()));
        assert_eq!(r.status, 200);
    }
    assert_eq!(home.run_files(), ["web.main.3000.json", "web.main.3000.sock"]);
}

#[test]
fn node_cluster_workers_answer_with_loopback_peers() {
    let home = Home::new("cluster");
    let mut cmd = home.wrapped("web", "main", "node");
    cmd.arg(fixture("node_cluster.js"));
    let mut server = Proc::spawn(cmd);
    server.wait_stdout("READY", START);
    let sock = home.sock("web.main.3000");
    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = get_unix(&sock, "/").unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
        let info: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        assert_eq!(info["remoteAddress"], "::1", "{info}");
        workers.insert(info["worker"].as_u64().unwrap());
    }
    assert_eq!(workers.len(), 2, "both workers answered: {workers:?}");
}

#[test]
fn dups_and_forked_children_never_remove_the_socket() {
    let home = Home::new("dup");
    let (r, _p) = run_script(&home, "app", "main", "python3", &[fixture("dup_fork.py").to_str().unwrap(), "8100"]);
    for key in ["converted", "dup_closed_still_listening", "fileno_family", "dup_family", "after_closing_copies"] {
        assert_eq!(r[key], true, "{key}: {r}");
    }
    assert_eq!(r["fileno_name"], serde_json::json!(["::", 8100]), "{r}");
    assert_eq!(r["child_exit"], 0, "{r}");
    assert_eq!(r["after_child_closed_all"], true, "{r}");
    assert_eq!(r["removed_on_last_close"], true, "{r}");
}

#[test]
fn reuseport_epoll_and_sigio_survive_the_swap() {
    let home = Home::new("beforebind");
    let (r, _p) = run_script(&home, "app", "main", "python3", &[fixture("before_bind.py").to_str().unwrap(), "8200"]);
    assert_eq!(r["reuseport_read_back"], 1, "{r}");
    for key in ["domain", "nonblocking", "epoll", "sigio", "second_reuseport_bind"] {
        assert_eq!(r[key], true, "{key}: {r}");
    }
    assert_eq!(r["peer"], "127.0.0.1");
    assert_eq!(r["third_without_reuseport"], libc::EADDRINUSE, "TCP's answer: {r}");
    let files = r["socket_files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{r}");
    assert!(files.contains(&"app.main.8200.sock".into()), "{r}");
}

#[test]
fn ipv4_and_ipv6_binds_of_one_port_both_serve() {
    let home = Home::new("dualstack");
    let mut cmd = home.wrapped("api", "main", "python3");
    cmd.arg(fixture("asyncio_server.py")).args(["", "8300"]);
    let mut server = Proc::spawn(cmd);
    let out = server.wait_stdout("READY", START);
    assert!(out.contains("READY 2"), "asyncio bound two families: {out}");
    let socks: Vec<_> = home.run_files().into_iter().filter(|f| f.ends_with(".sock")).collect();
    assert_eq!(socks.len(), 2, "{socks:?}");
    assert!(socks.contains(&"api.main.8300.sock".to_owned()), "{socks:?}");
    assert!(socks.iter().all(|s| s.starts_with("api.main.8300.")), "{socks:?}");
    let mut peers = Vec::new();
    for s in &socks {
        let r = get_unix(&home.run().join(s), "/").unwrap();
        assert_eq!(r.status, 200);
        peers.push(r.body.rsplit('=').next().unwrap().to_owned());
    }
    peers.sort();
    assert_eq!(peers, ["127.0.0.1", "::1"], "one socket per family");
}

#[test]
fn ports_addresses_and_processes_left_alone() {
    let home = Home::new("alone");
    let (skip, other) = (free_port(), free_port());
    let mut cmd = home.wrapped("app", "main", "python3");
    cmd.arg(fixture("left_alone.py")).args([skip.to_string(), other.to_string()]);
    cmd.env("AGENTFS_SKIP_PORTS", skip.to_string());
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(START).success(), "{}", p.output());
    let r = json_line(&p.stdout());
    assert_eq!(r["port0"], true, "{r}");
    assert_eq!(r["udp"], true, "{r}");
    assert_eq!(r["non_loopback"], "EADDRNOTAVAIL", "the kernel's own answer: {r}");
    assert_eq!(r["skipped_port_is_tcp"], true, "{r}");
    assert!(home.run_files().is_empty(), "{:?}", home.run_files());
    assert!(p.stderr().contains("excluded by AGENTFS_PORTS/AGENTFS_SKIP_PORTS"), "{}", p.stderr());

    let port = free_port();
    let mut cmd = home.wrapped("app", "main", "python3");
    cmd.env_remove("AGENTFS_APP").args([
        "-c",
        &format!(
            "import socket; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); \
         c=socket.create_connection(('127.0.0.1',{port})); print('{{\"tcp\": true}}')"
        ),
    ]);
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(START).success(), "{}", p.output());
    assert_eq!(json_line(&p.stdout())["tcp"], true);
    assert!(home.run_files().is_empty());
}

#[test]
fn a_home_too_long_for_sun_path_still_binds() {
    let base = TempDir::new("longhome");
    let long = base.path().join("h".repeat(60)).join("o".repeat(60));
    std::fs::create_dir_all(&long).unwrap();
    let home_path = long.join("agentfs");
    assert!(home_path.join("run/x.sock").as_os_str().len() > 108);
    let mut cmd = Command::new("python3");
    cmd.env("LD_PRELOAD", shim())
        .env("AGENTFS_HOME", &home_path)
        .env("AGENTFS_APP", "shop")
        .env("AGENTFS_INSTANCE", "main")
        .args(["-m", "http.server", "8000"]);
    let _server = Proc::spawn(cmd);
    let run = home_path.join("run");
    let sidecar = wait_for("a sidecar", START, || {
        std::fs::read_dir(&run).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "json"))
    });
    let stem = sidecar.file_stem().unwrap().to_str().unwrap().to_owned();
    assert!(stem.starts_with("h-") && stem.len() == 18, "hashed name: {stem}");
    let sc: Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    assert_eq!(
        (sc["app"].as_str(), sc["instance"].as_str(), sc["port"].as_u64()),
        (Some("shop"), Some("main"), Some(8000))
    );
    let sock = run.join(format!("{stem}.sock"));
    assert_eq!(sc["socket"].as_str(), Some(sock.to_str().unwrap()));
    let alias = agentfs_registry_alias(&sock);
    let r = get_unix(&alias.1, "/").unwrap();
    assert_eq!(r.status, 200);
}

/// `/proc/self/fd/<dirfd>/<name>` for a socket path too long to connect to.
fn agentfs_registry_alias(sock: &std::path::Path) -> (std::fs::File, std::path::PathBuf) {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(sock.parent().unwrap()).unwrap();
    let alias = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(sock.file_name().unwrap());
    (dir, alias)
}

#[test]
fn short_address_buffers_behave_like_the_kernel() {
    let home = Home::new("names");
    let exe = compile_c("names.c", home.path(), &[]);
    let sock = home.sock("c.main.8500");
    let mut cmd = home.wrapped("c", "main", exe.to_str().unwrap());
    cmd.args(["8500", sock.to_str().unwrap()]);
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(START).success(), "{}", p.output());
    let out = p.stdout();
    let get = |k: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("{k} "))).unwrap_or_else(|| panic!("{k} missing:\n{out}"))
    };
    assert_eq!(get("small_rc"), "0");
    assert_eq!(get("small_len"), "28", "full length reported");
    assert_eq!(get("small_family"), libc::AF_INET6.to_string(), "first bytes copied");
    assert_eq!(get("small_port"), "8500");
    assert_eq!((get("full_len"), get("full_addr"), get("full_port")), ("28", "::", "8500"));
    assert_eq!((get("zero_rc"), get("zero_len")), ("0", "28"));
    assert_eq!(get("listener_peer_rc"), "-1", "a listener has no peer");
    assert_eq!((get("accept_ok"), get("accept_len"), get("accept_family")), ("1", "28", &*libc::AF_INET6.to_string()));
    assert_eq!((get("peer_addr"), get("peer_port_ephemeral")), ("::1", "1"));
}

#[test]
fn each_instance_front_end_reaches_its_own_back_end() {
    let home = Home::new("frontback");
    let mut procs = Vec::new();
    for inst in ["alpha", "beta"] {
        for (role, port) in [("back", "8080"), ("front", "3000")] {
            let mut cmd = home.wrapped("shop", inst, "python3");
            cmd.arg(fixture("front_back.py")).args([role, port, "8080"]);
            let mut p = Proc::spawn(cmd);
            p.wait_stdout("READY", START);
            procs.push(p);
        }
    }
    for inst in ["alpha", "beta"] {
        let r = get_unix(&home.sock(&format!("shop.{inst}.3000")), "/").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, format!("front got: back of {inst}"));
    }
    let log: String = procs.iter().map(Proc::stderr).collect();
    assert!(log.contains("connect 127.0.0.1:8080: redirected to"), "{log}");
}

#[test]
fn forking_while_threads_bind_never_deadlocks() {
    let home = Home::new("forkhammer");
    let exe = compile_c("fork_hammer.c", home.path(), &[]);
    let mut cmd = home.wrapped("c", "main", exe.to_str().unwrap());
    cmd.env_remove("AGENTFS_DEBUG").arg("9000");
    let mut p = Proc::spawn(cmd);
    let status = p.wait(Duration::from_secs(90));
    assert!(status.success(), "{status}\n{}", p.output());
    assert!(p.stdout().starts_with("OK forks=500"), "{}", p.output());
    assert!(home.run_files().is_empty(), "every socket file was removed: {:?}", home.run_files());
}

#[test]
fn a_stale_socket_of_a_killed_process_does_not_block_the_next_bind() {
    let home = Home::new("stale");
    let start = |home: &Home| {
        let mut cmd = home.wrapped("api", "main", "python3");
        cmd.arg(fixture("asyncio_server.py")).args(["127.0.0.1", "8600"]);
        let mut p = Proc::spawn(cmd);
        p.wait_stdout("READY", START);
        p
    };
    let mut first = start(&home);
    first.signal(libc::SIGKILL);
    first.wait(START);
    assert_eq!(home.run_files(), ["api.main.8600.json", "api.main.8600.sock"], "SIGKILL leaves the files");
    assert!(UnixStream::connect(home.sock("api.main.8600")).is_err(), "nobody listens");
    let second = start(&home);
    let r = get_unix(&home.sock("api.main.8600"), "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(home.sidecar("api.main.8600")["pid"].as_u64(), Some(u64::from(second.pid())));
    assert!(second.stderr().contains("converted to"), "{}", second.stderr());
}

#[test]
fn a_connect_the_unix_socket_refuses_goes_out_on_tcp_with_the_apps_socket() {
    // The shim puts its Unix socket in place before connecting it; when that
    // connect fails, the app's own TCP socket must be back for the real one.
    let home = Home::new("refused");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    std::fs::create_dir_all(home.path().join("run")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(home.sock(&format!("app.main.{port}"))).unwrap());
    let mut cmd = home.wrapped("app", "main", "python3");
    cmd.args([
        "-c",
        &format!(
            "import socket; c = socket.socket(); c.connect(('127.0.0.1', {port})); \
            print(c.family.name, c.getpeername()[1]); c.sendall(b'hi')"
        ),
    ]);
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(START).success(), "{}", p.output());
    tcp.set_nonblocking(true).unwrap();
    let (mut conn, _) = tcp.accept().unwrap_or_else(|e| panic!("no TCP connection ({e}): {}", p.output()));
    conn.set_nonblocking(false).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
    assert_eq!(got, "hi");
    assert_eq!(p.stdout().trim(), format!("AF_INET {port}"));
    assert!(p.stderr().contains("; passed through"), "the shim tried the Unix socket first: {}", p.stderr());
}

#[test]
fn debug_file_logs_every_decision() {
    let home = Home::new("debuglog");
    let mut cmd = home.wrapped("app", "main", "python3");
    cmd.env("AGENTFS_DEBUG", "1").args([
        "-c",
        "import socket; s = socket.socket(); s.bind(('127.0.0.1', 8700)); s.listen(); \
        u = socket.socket(); u.bind(('127.0.0.1', 0)); print('{}')",
    ]);
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(START).success(), "{}", p.output());
    let log = std::fs::read_to_string(home.path().join(format!("logs/shim.{}.log", p.pid()))).unwrap();
    assert!(log.contains("bind 127.0.0.1:8700: converted to"), "{log}");
    assert!(log.contains("bind 127.0.0.1:0: passed through (port 0)"), "{log}");
    assert!(log.lines().all(|l| l.starts_with(&format!("agentfs-shim[{}] fd=", p.pid()))), "{log}");
    assert!(p.stderr().is_empty(), "nothing on the app's stderr: {}", p.stderr());
}

#[test]
fn finer_points_of_faithfulness() {
    let home = Home::new("probe");
    let mut cmd = home.wrapped("app", "main", "python3");
    cmd.env_remove("AGENTFS_DEBUG").arg(fixture("probe.py")).arg("9100");
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(Duration::from_secs(60)).success(), "{}", p.output());
    let r = json_line(&p.stdout());
    let expect = serde_json::json!({
        "nodelay_read_back": [1, 0, 1],
        "bad_values_are_einval": ["EINVAL", "EINVAL"],
        "dup_outlives_original": [true, true, true, true],
        "exec_child_sees_family": [libc::AF_INET6.to_string(), "::", "9105"],
        "redirected_client_names": ["127.0.0.1", 9106, "127.0.0.1", ["127.0.0.1", "9106"]],
        "forked_child_exit_keeps_parents_file": true,
        "exit_removes_files": [0, false, false],
        "second_process_gets_eaddrinuse": ["EADDRINUSE", true, "ok"],
        "closerange_removes_files": false,
        "raw_close_then_socket": [true, ["0.0.0.0", 0], false],
        "raw_close_rebind_with_number_held": [true, true],
        "raw_close_then_accept": [true, true, false],
        "accepted_local_address": ["::1", 9114],
        "socket_options_carried": [1, true],
        "fd_flags_carried": [true, true, false, false, true],
        "unset_tcp_option_reads_the_default": true,
        "already_bound_is_einval": "EINVAL",
        "redirect_falls_back_to_a_replica": [true, true],
        "full_backlog_connect_is_bounded": [0, true, true],
        "bare_socket_holder_is_eaddrinuse": "EADDRINUSE",
        "setsig_carried": true,
        "so_protocol": true,
        "bound_not_listening_is_not_taken": ["EADDRINUSE", true],
        "a_subprocess_does_not_disturb_the_books": [1, false, false],
        "own_unix_socket_in_run_is_left_alone": [true, "", true],
        "a_port_checked_and_closed_is_free_for_a_child": "ok",
        "exit_spares_a_socket_someone_else_put_there": [true, true],
        "a_small_backlog_absorbs_a_burst": 0,
    });
    for (check, want) in expect.as_object().unwrap() {
        assert_eq!(&r[check], want, "{check}\n{}", p.output());
    }
}

/// A listener bound to `[::ffff:127.0.0.1]` (Java's default) sees its peers
/// as `::ffff:127.0.0.1`, as TCP reports them, and a `::1` listener as `::1`.
#[test]
fn a_v4_mapped_listener_reports_v4_mapped_peers() {
    let home = Home::new("mapped");
    let code = "import socket, sys\n\
        s = socket.socket(socket.AF_INET6)\n\
        s.bind((sys.argv[1], int(sys.argv[2])))\n\
        s.listen()\n\
        c, a = s.accept()\n\
        print(a[0], c.getpeername()[0], c.getsockname()[0], flush=True)\n";
    for (bound, port, peer) in [("::ffff:127.0.0.1", "8710", "::ffff:127.0.0.1"), ("::1", "8711", "::1")] {
        let mut cmd = home.wrapped("java", "main", "python3");
        cmd.args(["-c", code, bound, port]);
        let mut p = Proc::spawn(cmd);
        let stem = format!("java.main.{port}");
        wait_file(&home.run().join(format!("{stem}.json")), START);
        let _c = UnixStream::connect(home.sock(&stem)).unwrap();
        assert!(p.wait(START).success(), "{}", p.output());
        assert_eq!(p.stdout().trim(), format!("{peer} {peer} {bound}"), "accept, getpeername, getsockname");
    }
}
