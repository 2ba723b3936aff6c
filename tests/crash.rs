//! Crash ≠ start (issue 16, item 3): an app that listened and is then killed
//! while its wrapper runs gets a 502 naming the exit at once (not the 30 s
//! wait of a start), `ps` shows it `crashed`; an app a watcher stops and
//! starts again is served again without a 5xx for requests that arrive
//! while it restarts (they are held, as at a start).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(60);

/// `agentfs wrap --name crash --instance INSTANCE -- sh -c SCRIPT` in a temp dir.
fn wrap_sh(env: &Env, dir: &std::path::Path, instance: &str, script: &str) -> Proc {
    let mut c = env.agentfs(&["wrap", "--name", "crash", "--instance", instance, "--", "sh", "-c", script]);
    c.current_dir(dir);
    Proc::spawn(c)
}

/// The pid in the sidecar of `crash.<instance>.8000`.
fn listener_pid(env: &Env, instance: &str) -> u32 {
    env.home.sidecar(&format!("crash.{instance}.8000"))["pid"].as_u64().unwrap() as u32
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started (a listener of its own wrap).
    unsafe { libc::kill(pid as i32, sig) };
}

/// GETs `host` until the router answers `wanted` (a request that was on
/// its way when the app died may get "closed the connection", one just
/// after it "without closing its socket" until the wrapper has recorded the
/// exit); returns that answer and when.
fn crash_page(env: &Env, host: &str, wanted: &str) -> (Response, Instant) {
    let deadline = Instant::now() + START;
    loop {
        let r = env.get(host, "/");
        match &r {
            Ok(r) if r.body.contains(wanted) => return (r.clone(), Instant::now()),
            _ if Instant::now() > deadline => {
                let log = std::fs::read_to_string(env.home.path().join("logs/router.log")).unwrap_or_default();
                let ps = env.run(&["ps"]).stdout;
                panic!("{host} did not answer {wanted:?} within {START:?}; last: {r:?}\nps:\n{ps}\nrouter log:\n{log}");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A daemonised listener (adopted and reaped by its wrapper, which records
/// the exit), and one reaped by its shell (whose files say it was killed).
#[test]
fn a_killed_listener_is_a_502_naming_its_exit_at_once_and_ps_says_crashed() {
    let env = Env::new("crash");
    let dir = TempDir::new("crash");
    let daemon = "(setsid python3 -m http.server 8000 &); exec sleep 120";
    let shell = "python3 -m http.server 8000; sleep 120";
    for (instance, script, how) in
        [("reaped", daemon, "killed by signal 9 (SIGKILL)"), ("shell", shell, "without closing its socket")]
    {
        let host = format!("{instance}.crash.localhost");
        let app = wrap_sh(&env, dir.path(), instance, script);
        env.wait_routed(&host, START);
        let pid = listener_pid(&env, instance);
        let killed = Instant::now();
        kill(pid, libc::SIGKILL);
        let (r, at) = crash_page(&env, &host, &format!("the app exited (pid {pid}, {how}"));
        let took = at - killed;
        assert_eq!(r.status, 502, "{instance}: {}", r.body);
        assert!(took < Duration::from_secs(1), "{instance}: the 502 took {took:?}");
        assert!(r.body.contains(&format!("still wrapped by pid {}", app.pid())), "{}", r.body);
        let rows: Value = serde_json::from_str(&env.run(&["ps", "--json"]).stdout).unwrap();
        let row = rows.as_array().unwrap().iter().find(|r| r["instance"] == instance).cloned().unwrap();
        assert_eq!(row["state"], "crashed", "{rows}");
        assert!(row["exit"].as_str().unwrap().contains(&format!("pid {pid}, {how}")), "{rows}");
        let table = env.run(&["ps"]).stdout;
        assert!(table.lines().any(|l| l.contains(instance) && l.contains("crashed")), "{table}");
    }
}

/// `watcher.py clean|signal`: restarts its server when `restart` appears in
/// its directory, as a watcher such as nodemon does. `clean`: the server
/// exits cleanly on SIGTERM and comes back 1.5 s later; `signal`: it is
/// killed by SIGUSR2, which it does not handle (nodemon's signal to a plain
/// `node`), leaving its files behind, and started again at once with the
/// same command line, but takes a second to listen.
const WATCHER: &str = r#"
import os, signal, subprocess, sys, time
CLEAN = sys.argv[1] == "clean"
SERVER = ("import os, signal, sys, time, http.server as h\n"
          + "time.sleep(float(os.environ.get('DELAY', '0')))\n"
          + ("signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n" if CLEAN else "")
          + "h.HTTPServer(('127.0.0.1', 8000), h.SimpleHTTPRequestHandler).serve_forever()\n")
child = subprocess.Popen([sys.executable, "-c", SERVER])
while not os.path.exists("restart"):
    time.sleep(0.05)
os.remove("restart")
child.send_signal(signal.SIGTERM if CLEAN else signal.SIGUSR2)
child.wait()
time.sleep(1.5 if CLEAN else 0)
child = subprocess.Popen([sys.executable, "-c", SERVER], env=dict(os.environ, DELAY="0" if CLEAN else "1"))
child.wait()
"#;

#[test]
fn a_watcher_restart_is_held_and_served_without_a_5xx() {
    let env = Env::new("restart");
    for how in ["clean", "signal"] {
        let dir = TempDir::new("restart");
        std::fs::write(dir.path().join("watcher.py"), WATCHER).unwrap();
        let host = format!("{how}.crash.localhost");
        let mut c = env.agentfs(&["wrap", "--name", "crash", "--instance", how, "--", "python3", "watcher.py", how]);
        c.current_dir(dir.path());
        let _app = Proc::spawn(c);
        env.wait_routed(&host, START);
        let sidecar = format!("crash.{how}.8000.json");
        let first = listener_pid(&env, how);
        std::fs::write(dir.path().join("restart"), "").unwrap();
        wait_for("the first server to be gone", START, || {
            let files = env.home.run_files();
            (!files.contains(&sidecar) || !agentfs_registry::liveness::pid_alive(first)).then_some(())
        });
        // Until the router has seen it go (a rescan, milliseconds), a request
        // may still be sent to the old socket and refused (a 502).
        wait_for("the router to drop the old server", START, || {
            let routes: Value = serde_json::from_str(&env.get("localhost", "/api/routes").ok()?.body).ok()?;
            let pids = routes["apps"].to_string();
            (!pids.contains(&format!("[{first}]"))).then_some(())
        });
        let r = env.get(&host, "/").unwrap();
        assert_eq!(r.status, 200, "{how}: held while the watcher restarts the app: {}", r.body);
        assert_ne!(listener_pid(&env, how), first, "{how}: served by the restarted server");
    }
}

#[test]
fn the_socket_of_an_app_killed_between_bind_and_listen_goes_once_it_has_settled() {
    // No sidecar tells whose it is: the router judges such a socket once it
    // is 2 s old, and must look again then, not at its next periodic rescan.
    let env = Env::new("bare");
    let dir = TempDir::new("bare");
    for round in ["a", "b"] {
        let port = free_port();
        let script = format!(
            "exec python3 -c 'import os, socket; s = socket.socket(); \
            s.bind((\"127.0.0.1\", {port})); os.kill(os.getpid(), 9)'"
        );
        let mut p = wrap_sh(&env, dir.path(), round, &script);
        let file = format!("crash.{round}.{port}.sock");
        wait_for("the socket file", START, || env.home.run_files().contains(&file).then_some(()));
        let seen = Instant::now();
        p.wait(START);
        while env.home.run_files().contains(&file) && seen.elapsed() < Duration::from_secs(8) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = seen.elapsed();
        assert!(!env.home.run_files().contains(&file), "left: {:?}\n{}", env.home.run_files(), p.output());
        assert!(took < Duration::from_millis(3_000), "round {round}: gone {took:?} after it appeared");
    }
}
