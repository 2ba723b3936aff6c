//! `agentfs wrap` behaving like the command it wraps: Ctrl-C at a terminal,
//! SIGTERM, exit statuses, stdin, a killed wrapper; and coming up in order:
//! requests held until the app listens, the banner only then, concurrent
//! wraps, a router started from inside a wrapped app.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(30);

/// Types Ctrl-C at a terminal running `agentfs wrap -- CMD` (through
/// tests/fixtures/pty_run.py); returns its JSON report.
fn ctrl_c(env: &Env, dir: &Path, cmd: &[&str]) -> Value {
    let mut harness = Command::new("python3");
    clean_env(&mut harness);
    harness.current_dir(dir).arg(fixture("pty_run.py")).arg("READY").arg("--").arg(agentfs());
    harness.args(["wrap", "--name", "tty", "--instance", "main", "--"]).args(cmd);
    harness.env("AGENTFS_HOME", env.home.path()).env("AGENTFS_HTTP_PORT", env.port.to_string());
    let mut p = Proc::spawn(harness);
    assert!(p.wait(Duration::from_secs(90)).success(), "{}", p.output());
    serde_json::from_str(p.stdout().lines().last().unwrap()).unwrap()
}

#[test]
fn ctrl_c_at_a_terminal_stops_app_and_wrapper_and_cleans_up() {
    let env = Env::new("ctrlc");
    let dir = TempDir::new("ctrlc");
    let server = "import http.server as h; s = h.HTTPServer(('', 8000), h.SimpleHTTPRequestHandler); \
        print('READY', flush=True); s.serve_forever()";
    let r = ctrl_c(&env, dir.path(), &["python3", "-c", server]);
    assert!(r["seconds"].as_f64().unwrap() < 2.0, "{r}");
    assert_eq!(r["status"], 130, "128 + SIGINT: Python dies of an unhandled Ctrl-C: {r}");
    let out = r["output"].as_str().unwrap();
    assert_eq!(out.matches("KeyboardInterrupt").count(), 1, "Ctrl-C reached the app once: {out}");
    wait_for("run/ to be empty", Duration::from_secs(2), || env.home.run_files().is_empty().then_some(()));

    let graceful = "import signal, sys, time; signal.signal(signal.SIGINT, lambda *_: sys.exit(0)); \
        print('READY', flush=True); time.sleep(60)";
    let r = ctrl_c(&env, dir.path(), &["python3", "-c", graceful]);
    assert_eq!(r["status"], 0, "an app that exits 0 on Ctrl-C: {r}");
}

#[test]
fn sigterm_to_the_wrapper_stops_the_app_and_cleans_up() {
    let env = Env::new("sigterm");
    let dir = TempDir::new("sigterm");
    let mut app =
        wrap_in(&env, dir.path(), &["--name", "t", "--instance", "main", "--", "python3", "-m", "http.server", "8000"]);
    wait_stderr(&app, "agentfs: t (main) →", START);
    assert!(!env.home.run_files().is_empty());
    let sent = Instant::now();
    app.signal(libc::SIGTERM);
    let status = app.wait(Duration::from_secs(5));
    assert!(sent.elapsed() < Duration::from_secs(2), "{:?}", sent.elapsed());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!((status.code(), status.signal()), (Some(128 + libc::SIGTERM), None), "{}", app.output());
    assert!(env.home.run_files().is_empty(), "{:?}", env.home.run_files());
}

#[test]
fn exit_statuses_pass_through() {
    let env = Env::new("status");
    let r = env.run(&["wrap", "--no-router", "--name", "s", "--", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, Some(7), "{r:?}");
    let r = env.run(&["wrap", "--no-router", "--name", "s", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(r.code, Some(137), "{r:?}");
    let r = env.run(&["wrap", "--no-router", "--name", "s", "--", "no-such-program-xyz"]);
    assert_eq!(r.code, Some(127), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("cannot run no-such-program-xyz"), "{r:?}");
    assert!(env.router_pid().is_none(), "--no-router started nothing");
}

#[test]
fn the_wrapped_program_reads_the_wrappers_stdin() {
    let env = Env::new("stdin");
    let mut cmd = env.agentfs(&[
        "wrap",
        "--no-router",
        "--name",
        "s",
        "--",
        "python3",
        "-c",
        "import sys; print(sys.stdin.read().upper())",
    ]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello through the wrapper").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "HELLO THROUGH THE WRAPPER");
}

#[test]
fn a_request_during_start_up_waits_for_the_app() {
    let env = Env::new("early");
    let dir = TempDir::new("early");
    let slow = "import time, http.server as h; time.sleep(1.5); \
        h.HTTPServer(('', 8000), h.SimpleHTTPRequestHandler).serve_forever()";
    let _app = wrap_in(&env, dir.path(), &["--name", "slow", "--instance", "main", "--", "python3", "-c", slow]);
    wait_for("the wrapper record and the router", START, || {
        let recorded = env.home.run_files().iter().any(|f| f.starts_with("slow.main.wrapper-"));
        // The record is written before the wrapper starts the router.
        (recorded && std::net::TcpStream::connect(("127.0.0.1", env.port)).is_ok()).then_some(())
    });
    // The wrapper record is written before the router is started.
    wait_for("the router to accept", START, || std::net::TcpStream::connect(("127.0.0.1", env.port)).ok());
    let asked = Instant::now();
    let r = env.get("slow.localhost", "/").unwrap();
    assert_eq!(r.status, 200, "held until the app listened, not 404/503: {r:?}");
    assert!(asked.elapsed() >= Duration::from_millis(500), "it did wait: {:?}", asked.elapsed());
}

#[test]
fn a_killed_wrapper_takes_its_command_down() {
    let env = Env::new("orphan");
    let dir = TempDir::new("orphan");
    let app =
        wrap_in(&env, dir.path(), &["--name", "o", "--instance", "main", "--", "python3", "-m", "http.server", "8000"]);
    wait_stderr(&app, "agentfs: o (main) →", START);
    let server = env.home.sidecar("o.main.8000")["pid"].as_u64().unwrap() as u32;
    app.signal(libc::SIGKILL);
    wait_for("the server to exit", Duration::from_secs(5), || {
        (!std::path::Path::new(&format!("/proc/{server}")).exists()
            || std::fs::read_to_string(format!("/proc/{server}/stat")).is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
}

#[test]
fn the_banner_waits_until_the_app_listens() {
    let env = Env::new("banner");
    let dir = TempDir::new("banner");
    let slow = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 8000)); \
        print('bound', flush=True); time.sleep(1.5); s.listen(); print('listening', flush=True); time.sleep(60)";
    let mut app =
        wrap_in(&env, dir.path(), &["--no-router", "--name", "b", "--instance", "main", "--", "python3", "-c", slow]);
    app.wait_stdout("bound", START);
    wait_stderr(&app, "agentfs: b (main) →", START);
    assert!(app.stdout().contains("listening"), "banner printed before listen(): {}", app.output());
    assert!(env.home.run().join("b.main.8000.json").exists());
}

#[test]
fn a_router_started_from_inside_a_wrapped_app_listens_on_tcp() {
    let env = Env::new("nested");
    let mut cmd = env.agentfs(&["router", "start"]);
    cmd.env("LD_PRELOAD", shim()).env("AGENTFS_APP", "shop").env("AGENTFS_INSTANCE", "main");
    let mut p = Proc::spawn(cmd);
    assert!(p.wait(START).success(), "{}", p.output());
    assert_eq!(env.get("localhost", "/api/routes").unwrap().status, 200, "the router's own port is real TCP");
    assert!(env.home.run_files().is_empty(), "{:?}", env.home.run_files());
}

#[test]
fn wraps_started_together_take_different_instances() {
    let env = Env::new("together");
    let dir = TempDir::new("together");
    let args = ["--no-router", "--name", "twin", "--instance", "same", "--", "python3", "-m", "http.server", "8000"];
    let (a, b) = (wrap_in(&env, dir.path(), &args), wrap_in(&env, dir.path(), &args));
    let (ea, eb) = (wait_stderr(&a, ") → ", START), wait_stderr(&b, ") → ", START));
    let both = format!("{ea}{eb}");
    assert!(both.contains("twin (same) →") && both.contains("twin (same-2) →"), "{both}");
    assert!(!both.contains("Address already in use"), "{both}");
}

#[test]
fn the_wrapper_never_connects_to_a_socket_the_shim_has_not_announced_yet() {
    // A listener between listen() and its sidecar still has the shim's claim;
    // a wrapper probe then would be a connection nobody made. A bare socket
    // (no claim: the app bound $AGENTFS_SOCKET itself) is probed, as before.
    let count = |claimed: bool| {
        let env = Env::new("noprobe");
        let dir = TempDir::new("noprobe");
        let script = "import json, os, socket, sys, time\n\
            run = os.environ['AGENTFS_HOME'] + '/run'\n\
            stem = 'w.main.9999'\n\
            if sys.argv[1] == 'claimed':\n    open(f'{run}/.{stem}.claim', 'w').write(str(os.getpid()))\n\
            s = socket.socket(socket.AF_UNIX)\n\
            s.bind(f'{run}/{stem}.sock')\n\
            s.listen()\n\
            n, deadline = 0, time.time() + 1.5\n\
            while time.time() < deadline:\n    s.settimeout(max(0.01, deadline - time.time()))\n    try:\n        s.accept()[0].close()\n        n += 1\n    except socket.timeout:\n        pass\n\
            print(json.dumps({'connections': n}), flush=True)\n";
        let arg = if claimed { "claimed" } else { "bare" };
        let args = ["--no-router", "--name", "w", "--instance", "main", "--", "python3", "-c", script, arg];
        let mut app = wrap_in(&env, dir.path(), &args);
        assert!(app.wait(START).success(), "{}", app.output());
        let line = app.stdout().lines().rev().find(|l| l.starts_with('{')).map(str::to_owned);
        let v: Value = serde_json::from_str(&line.unwrap_or_else(|| panic!("{}", app.output()))).unwrap();
        v["connections"].as_u64().unwrap()
    };
    assert_eq!(count(true), 0, "no probe while the claim is there");
    assert!(count(false) >= 1, "a bare socket is probed");
}

#[test]
fn wrap_log_passes_pipes_through_unchanged_and_logs_each_line() {
    let env = Env::new("wraplog");
    let dir = TempDir::new("wraplog");
    let script = "echo out; echo err >&2; printf 'no newline'; exit 3";
    let r = run_wrap(
        &env,
        dir.path(),
        &["--no-router", "--log", "--name", "tee", "--instance", "a", "--", "sh", "-c", script],
    );
    assert_eq!((r.code, r.stdout.as_str()), (Some(3), "out\nno newline"), "{r:?}");
    assert!(r.stderr.contains("err\n") && !r.stderr.contains("out"), "stderr stays stderr: {r:?}");
    let logged = env.run(&["logs", "a.tee"]).stdout;
    let lines: Vec<&str> = logged.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert!(lines[0].contains("agentfs wrap --log"), "{logged}");
    let mut got = lines[1..].to_vec();
    got.sort_unstable();
    assert_eq!(got, ["err", "no newline", "out"], "stdout and stderr, each line once: {logged}");
}

/// `agentfs wrap ARGS` in `dir` with its output on pipes, to completion.
fn run_wrap(env: &Env, dir: &Path, args: &[&str]) -> Finished {
    let mut p = wrap_in(env, dir, args);
    let status = p.wait(Duration::from_secs(30));
    Finished { code: status.code(), stdout: p.stdout(), stderr: p.stderr() }
}

/// At a terminal: the app still has one (a pty), sees keys, its colours
/// reach the terminal and not the log, Ctrl-C reaches it, and the terminal's
/// modes are as before once the wrapper is done.
#[test]
fn wrap_log_at_a_terminal_keeps_the_apps_tty_and_restores_the_terminal() {
    let env = Env::new("wraplogtty");
    let dir = TempDir::new("wraplogtty");
    let app = "import os, sys, time\n\
        print(f'READY tty={os.isatty(0)} {os.isatty(1)} {os.isatty(2)}', flush=True)\n\
        print(f'\\x1b[32mGOT {input().upper()}\\x1b[0m', flush=True)\n\
        time.sleep(60)\n";
    std::fs::write(dir.path().join("app.py"), app).unwrap();
    let wrap = format!("{} wrap --no-router --log --name tty --instance a -- python3 app.py", agentfs());
    let mut harness = Command::new("python3");
    clean_env(&mut harness);
    harness.current_dir(dir.path()).arg(fixture("pty_run.py")).args([
        "READY",
        "--type",
        "hello",
        "--expect",
        "GOT HELLO",
    ]);
    harness.args(["--", "sh", "-c", &format!("stty -g; {wrap}; echo status=$?; stty -g")]);
    harness.env("AGENTFS_HOME", env.home.path());
    let mut p = Proc::spawn(harness);
    assert!(p.wait(Duration::from_secs(90)).success(), "{}", p.output());
    let r: Value = serde_json::from_str(p.stdout().lines().last().unwrap()).unwrap();
    let shown = r["output"].as_str().unwrap();
    assert!(shown.contains("READY tty=True True True"), "the app has a terminal: {shown}");
    assert!(shown.contains("\u{1b}[32mGOT HELLO"), "colours reach the terminal: {shown}");
    assert!(shown.contains("status=130"), "Ctrl-C reached the app: {shown}");
    let modes: Vec<&str> = shown.lines().filter(|l| l.matches(':').count() > 10).collect();
    assert_eq!(modes.len(), 2, "{shown}");
    assert_eq!(modes[0], modes[1], "the terminal's modes are restored");
    let logged = env.run(&["logs", "a.tty"]).stdout;
    assert!(logged.contains(" READY tty=True True True\n") && logged.contains(" GOT HELLO\n"), "{logged}");
    assert!(!logged.contains('\u{1b}') && !logged.contains('\r'), "the log has the text as shown: {logged:?}");
}

#[test]
fn wrap_log_at_a_terminal_keeps_ctrl_z_and_fg() {
    let env = Env::new("wraplogjob");
    let dir = TempDir::new("wraplogjob");
    let r = job_control(&env, dir.path(), &["--no-router", "--log", "--name", "job"]);
    assert_eq!((&r["stopped"], &r["answered"], &r["status"]), (&true.into(), &true.into(), &0.into()), "{r}");
}
