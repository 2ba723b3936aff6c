//! `agentfs wrap` owns the command's whole process tree: `npm run dev` →
//! `sh -c` → `node` is stopped whole by `kill -INT`, `-TERM` and `-KILL` of
//! the wrapper and by Ctrl-C at a terminal, a tree still reads the terminal,
//! a `setsid`-daemonised listener is stopped too, and `ps --json` tells a
//! starting instance from a live one.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agentfs_registry::liveness::pid_alive;
use agentfs_registry::proctree;
use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(60);
/// AGENTFS_STOP_TIMEOUT_SECS of every wrap here.
const GRACE_SECS: u64 = 2;

/// A project whose `dev` script is `sh -c 'node <script>'`.
fn npm_project(dir: &Path, script: &str, source: &str) -> PathBuf {
    let proj = dir.join("tree");
    std::fs::create_dir(&proj).unwrap();
    let dev = format!(r#"{{"name":"tree","private":true,"scripts":{{"dev":"sh -c 'node {script}'"}}}}"#);
    std::fs::write(proj.join("package.json"), dev).unwrap();
    std::fs::write(proj.join(script), source).unwrap();
    proj
}

/// Listens on 3000, says READY, logs each SIGINT (and exits by it).
const SERVER_JS: &str = "require('fs').writeFileSync('pids', process.pid + ' ' + process.ppid);\n\
    process.on('SIGINT', () => { console.log('GOT SIGINT'); setTimeout(() => process.kill(process.pid, 'SIGINT'), 300); \
    process.removeAllListeners('SIGINT'); });\n\
    require('http').createServer((q, s) => s.end('tree ok')).listen(3000, () => console.log('READY'));\n";

/// `agentfs wrap --name tree --instance INSTANCE -- CMD` in `dir`.
fn wrap(env: &Env, dir: &Path, instance: &str, cmd: &[&str]) -> Proc {
    wrap_with(env, dir, &["--instance", instance], cmd)
}

/// `agentfs wrap --name tree FLAGS -- CMD` in `dir`.
fn wrap_with(env: &Env, dir: &Path, flags: &[&str], cmd: &[&str]) -> Proc {
    let mut args = vec!["wrap", "--name", "tree"];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    let mut c = env.agentfs(&args);
    c.current_dir(dir).env("AGENTFS_STOP_TIMEOUT_SECS", GRACE_SECS.to_string());
    Proc::spawn(c)
}

/// The wrapper's live descendants, leaving out the router.
fn tree_of(wrapper: u32, env: &Env) -> Vec<u32> {
    let all = proctree::list().expect("Linux /proc");
    let skip: Vec<u32> = env.router_pid().into_iter().collect();
    proctree::descendants(&all, wrapper, &skip).into_iter().filter(|p| pid_alive(*p)).collect()
}

/// Waits until none of `pids` lives, failing after `deadline`.
fn wait_gone(what: &str, pids: &[u32], deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    wait_for(&format!("{what}: {pids:?} to be gone"), left, || pids.iter().all(|p| !pid_alive(*p)).then_some(()));
}

/// After the wrapper was told to stop at `sent`: nothing of `tree` lives,
/// run/ is empty and `host` is no longer routed, by the grace period + 1 s.
fn assert_all_gone(env: &Env, tree: &[u32], host: &str, sent: Instant) {
    let deadline = sent + Duration::from_secs(GRACE_SECS + 1);
    wait_gone("the tree", tree, deadline);
    while !env.home.run_files().is_empty() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(env.home.path().join("logs/router.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "run/ not empty {:?} after the signal to {host}'s wrapper: {:?}\nrouter log, newest first:\n{}",
                sent.elapsed(),
                env.home.run_files(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(env.get(host, "/").unwrap().status, 404, "{host} is no longer routed");
}

#[test]
fn npm_run_dev_is_stopped_whole_by_int_term_and_kill_of_the_wrapper() {
    let env = Env::new("npmtree");
    for (signal, code) in [(libc::SIGINT, Some(130)), (libc::SIGTERM, Some(143)), (libc::SIGKILL, None)] {
        let dir = TempDir::new("npmtree");
        let proj = npm_project(dir.path(), "server.js", SERVER_JS);
        let instance = format!("sig{signal}");
        let host = format!("{instance}.tree.localhost");
        let mut app = wrap(&env, &proj, &instance, &["npm", "run", "dev"]);
        wait_stderr(&app, &format!("agentfs: tree ({instance}) →"), START);
        assert_eq!(env.wait_routed(&host, START).body, "tree ok");
        let tree = tree_of(app.pid(), &env);
        assert!(tree.len() >= 3, "npm, sh and node: {tree:?}");
        let sent = Instant::now();
        app.signal(signal);
        let status = app.wait(Duration::from_secs(GRACE_SECS + 1));
        if let Some(code) = code {
            assert_eq!(status.code(), Some(code), "signal {signal}: {}", app.output());
        }
        assert_all_gone(&env, &tree, &host, sent);
    }
}

/// Runs `agentfs wrap -- npm run dev` in a terminal (tests/fixtures/pty_run.py)
/// until READY, types `typed` if given, then Ctrl-C; returns its report.
fn in_a_terminal(env: &Env, proj: &Path, typed: Option<(&str, &str)>) -> Value {
    let mut harness = Command::new("python3");
    clean_env(&mut harness);
    harness.current_dir(proj).arg(fixture("pty_run.py")).arg("READY");
    if let Some((line, answer)) = typed {
        harness.args(["--type", line, "--expect", answer]);
    }
    harness.arg("--").arg(agentfs()).args(["wrap", "--name", "tty", "--instance", "main", "--", "npm", "run", "dev"]);
    harness.env("AGENTFS_HOME", env.home.path()).env("AGENTFS_HTTP_PORT", env.port.to_string());
    harness.env("AGENTFS_STOP_TIMEOUT_SECS", GRACE_SECS.to_string());
    let mut p = Proc::spawn(harness);
    assert!(p.wait(Duration::from_secs(120)).success(), "{}", p.output());
    serde_json::from_str(p.stdout().lines().last().unwrap()).unwrap()
}

#[test]
fn ctrl_c_at_a_terminal_stops_the_npm_tree_once() {
    let env = Env::new("ttytree");
    let dir = TempDir::new("ttytree");
    let proj = npm_project(dir.path(), "server.js", SERVER_JS);
    let r = in_a_terminal(&env, &proj, None);
    assert_eq!(r["status"], 130, "{r}");
    let out = r["output"].as_str().unwrap();
    assert_eq!(out.matches("GOT SIGINT").count(), 1, "Ctrl-C reached node once: {out}");
    let pids: Vec<u32> =
        std::fs::read_to_string(proj.join("pids")).unwrap().split_whitespace().map(|p| p.parse().unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(GRACE_SECS + 1);
    wait_gone("node and its sh", &pids, deadline);
    wait_for("run/ to be empty", Duration::from_secs(GRACE_SECS + 1), || env.home.run_files().is_empty().then_some(()));
}

#[test]
fn a_tree_at_a_terminal_reads_from_it() {
    let env = Env::new("ttyread");
    let dir = TempDir::new("ttyread");
    let reader = "console.log('READY'); process.stdin.once('data', d => console.log('GOT ' + d.toString().trim().toUpperCase()));";
    let proj = npm_project(dir.path(), "reader.js", reader);
    let r = in_a_terminal(&env, &proj, Some(("hello tty", "GOT HELLO TTY")));
    assert!(r["output"].as_str().unwrap().contains("GOT HELLO TTY"), "{r}");
    assert_eq!(r["status"], 130, "{r}");
}

/// A shell that daemonises a Python server (a subshell runs `setsid`, so the
/// server is in a session of its own and its parent is gone) and sleeps.
const DAEMONISING: &str = "(setsid python3 -c 'import http.server as h; \
    h.HTTPServer((\"\", 8000), h.SimpleHTTPRequestHandler).serve_forever()' &); exec sleep 60";

#[test]
fn a_setsid_daemonised_listener_is_stopped_with_its_wrapper() {
    let env = Env::new("daemon");
    for (signal, code) in [(libc::SIGTERM, Some(143)), (libc::SIGKILL, None)] {
        let dir = TempDir::new("daemon");
        let instance = format!("sig{signal}");
        let host = format!("{instance}.tree.localhost");
        let mut app = wrap(&env, dir.path(), &instance, &["sh", "-c", DAEMONISING]);
        env.wait_routed(&host, START);
        let daemon = env.home.sidecar(&format!("tree.{instance}.8000"))["pid"].as_u64().unwrap() as u32;
        let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
        let info = proctree::parse_stat(&stat).unwrap();
        assert_eq!(info.ppid, app.pid(), "adopted by the wrapper (a child subreaper)");
        assert_eq!(info.pgid, daemon, "the daemon left the command's process group");
        let tree = tree_of(app.pid(), &env);
        let sent = Instant::now();
        app.signal(signal);
        let status = app.wait(Duration::from_secs(GRACE_SECS + 1));
        if let Some(code) = code {
            assert_eq!(status.code(), Some(code), "{}", app.output());
        }
        assert_all_gone(&env, &tree, &host, sent);
    }
}

#[test]
fn ps_json_tells_a_starting_instance_from_a_live_one() {
    let env = Env::new("psstate");
    let dir = TempDir::new("psstate");
    let slow = wrap_in(
        &env,
        dir.path(),
        &["--no-router", "--name", "slow", "--instance", "main", "--", "python3", "-c", "import time; time.sleep(60)"],
    );
    let fast = wrap_in(
        &env,
        dir.path(),
        &["--no-router", "--name", "fast", "--instance", "main", "--", "python3", "-m", "http.server", "8000"],
    );
    wait_stderr(&fast, "agentfs: fast (main) →", START);
    wait_for("the slow wrapper's record", START, || {
        env.home.run_files().iter().any(|f| f.starts_with("slow.main.wrapper-")).then_some(())
    });
    let r = env.run(&["ps", "--json"]);
    let rows: Value = serde_json::from_str(&r.stdout).unwrap();
    let row = |app: &str| rows.as_array().unwrap().iter().find(|r| r["app"] == app).cloned().unwrap();
    let (s, f) = (row("slow"), row("fast"));
    assert_eq!((&s["state"], &s["port"], &s["socket"]), (&"starting".into(), &Value::Null, &Value::Null), "{rows}");
    assert_eq!(s["wrapper_pid"], slow.pid());
    assert_eq!(s["url"], format!("http://main.slow.localhost:{}", env.port));
    assert_eq!((&f["state"], &f["port"]), (&"live".into(), &8000.into()), "{rows}");
    let table = env.run(&["ps"]).stdout;
    assert!(table.lines().any(|l| l.starts_with("slow") && l.contains("starting")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("fast") && l.contains("live")), "{table}");
}

#[test]
fn ctrl_z_and_fg_at_a_terminal_stop_and_resume_the_command() {
    let env = Env::new("jobctl");
    let dir = TempDir::new("jobctl");
    let r = job_control(&env, dir.path(), &["--no-router", "--name", "job"]);
    assert_eq!((&r["stopped"], &r["answered"], &r["status"]), (&true.into(), &true.into(), &0.into()), "{r}");
}

#[test]
fn without_a_router_the_next_ps_stops_what_a_killed_wrapper_left() {
    let env = Env::new("norouter");
    let dir = TempDir::new("norouter");
    let proj = npm_project(dir.path(), "server.js", SERVER_JS);
    let mut app = wrap_with(&env, &proj, &["--no-router", "--instance", "main"], &["npm", "run", "dev"]);
    wait_stderr(&app, "agentfs: tree (main) →", START);
    let tree = tree_of(app.pid(), &env);
    app.signal(libc::SIGKILL);
    app.wait(Duration::from_secs(5));
    let sent = Instant::now();
    let r = env.run(&["ps", "--json"]);
    assert!(r.stderr.contains("stopped what tree (main) left running"), "{r:?}");
    assert_eq!(r.stdout.trim(), "[]", "{r:?}");
    wait_gone("the tree", &tree, sent + Duration::from_secs(GRACE_SECS + 1));
    assert!(env.home.run_files().is_empty(), "{:?}", env.home.run_files());
}

#[test]
fn a_static_child_that_listens_on_tcp_is_routed_and_named() {
    let env = Env::new("unseen");
    let dir = TempDir::new("unseen");
    let exe = compile_c("static_server.c", dir.path(), &["-static"]);
    let port = free_port();
    // sh (which takes the shim) starts a static program (which cannot): only the scan finds its listener.
    let script = format!("PORT={port} {}; true", exe.display());
    let started = Instant::now();
    let args = ["--name", "stat", "--instance", "main", "--", "sh", "-c", &script];
    let app = wrap_in_with(&env, dir.path(), &args, &[NO_SECCOMP]);
    let said = wait_stderr(&app, "which the shim cannot enter (statically linked)", Duration::from_secs(10));
    assert!(said.contains(&format!("listens on TCP 127.0.0.1:{port}")), "{said}");
    assert!(said.contains("a second copy will collide on that port"), "{said}");
    let r = env.wait_routed("stat.localhost", Duration::from_secs(2));
    assert!(r.body.contains("static hello"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "routed {:?} after the start", started.elapsed());
    let ps = env.run(&["ps", "--json"]);
    assert!(ps.stdout.contains(&format!("tcp:127.0.0.1:{port}")), "{}", ps.stdout);
}

#[test]
fn a_process_that_runs_as_another_user_is_named_once() {
    if rustix::process::geteuid().as_raw() != 0 || Command::new("runuser").arg("--help").output().is_err() {
        eprintln!("SKIP: needs root and runuser to start a process as another user");
        return;
    }
    let env = Env::new("uid");
    let dir = TempDir::new("uid");
    let app = wrap_in(&env, dir.path(), &["--name", "uid", "--", "sh", "-c", "runuser -u nobody -- sleep 20"]);
    let said = wait_stderr(&app, "runs as nobody and cannot load the shim", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(app.stderr().matches("runs as nobody").count(), 1, "{said}");
}
