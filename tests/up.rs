//! Background instances as an agent uses them: `agentfs up` returns with the
//! URL and leaves the instance running in a session of its own, `logs` shows
//! what it printed (rotated at the limit, never through a symlink), `down`
//! stops the whole tree and leaves nothing, `restart` and
//! `--restart=on-failure` start it again, and bad input gets one line.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(30);

/// `agentfs ARGS` run in `dir` (with these variables) to completion.
fn run_in(env: &Env, dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Finished {
    let mut c = env.agentfs(args);
    c.current_dir(dir).envs(vars.iter().copied());
    let mut p = Proc::spawn(c);
    let status = p.wait(Duration::from_secs(60));
    Finished { code: status.code(), stdout: p.stdout(), stderr: p.stderr() }
}

fn ps_json(env: &Env) -> Vec<Value> {
    let r = env.run(&["ps", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    serde_json::from_str::<Value>(&r.stdout).unwrap().as_array().unwrap().clone()
}

/// The `ps --json` rows of instance `name` (`instance.app`).
fn rows_of(env: &Env, name: &str) -> Vec<Value> {
    ps_json(env)
        .into_iter()
        .filter(|r| format!("{}.{}", r["instance"].as_str().unwrap(), r["app"].as_str().unwrap()) == name)
        .collect()
}

/// The session id of `pid` (field 6 of /proc/<pid>/stat).
fn session_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
}

fn services(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.home.path().join("services"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn up_returns_with_the_url_logs_requests_and_down_leaves_nothing() {
    let env = Env::new("up");
    let dir = TempDir::new("uprepo");
    let main = &shop_repo(dir.path(), &[])[0];
    let started = Instant::now();
    let r = run_in(&env, main, &["up", "--", "python3", "-m", "http.server", "8000"], &[]);
    let took = started.elapsed();
    assert_eq!(r.code, Some(0), "{r:?}");
    let url = format!("http://main.shop.localhost:{}", env.port);
    assert_eq!(r.stdout.trim_end(), url, "{r:?}");
    assert!(took < Duration::from_secs(3), "up took {took:?}");
    let page = env.get("main.shop.localhost", "/").unwrap();
    assert_eq!((page.status, page.body.as_str()), (200, "main tree"), "{page:?}");

    let row = rows_of(&env, "main.shop").remove(0);
    let (wrapper, server) = (row["wrapper_pid"].as_u64().unwrap() as u32, row["pid"].as_u64().unwrap() as u32);
    // SAFETY: getsid(0) reads this process's session id.
    let mine = unsafe { libc::getsid(0) } as u32;
    assert_ne!(session_of(wrapper), mine, "the wrapper runs in a session of its own, not the test's");
    assert_eq!(row["restarts"], 0, "{row}");

    let logged = wait_for("the request line in agentfs logs", START, || {
        let l = run_in(&env, main, &["logs"], &[]);
        l.stdout.contains("\"GET / HTTP/1.1\" 200").then_some(l.stdout)
    });
    assert!(logged.lines().all(|l| l.as_bytes().get(23) == Some(&b'Z')), "each line is timestamped:\n{logged}");

    // Started again in the same place, it is the same instance.
    let again = run_in(&env, main, &["up", "--", "python3", "-m", "http.server", "8000"], &[]);
    assert_eq!((again.code, again.stdout.trim_end()), (Some(0), url.as_str()), "{again:?}");
    assert!(again.stderr.contains("already runs in the background"), "{again:?}");

    // It survives a router restart.
    assert_eq!(env.run(&["router", "stop"]).code, Some(0));
    assert_eq!(env.run(&["router", "start"]).code, Some(0));
    env.wait_routed("main.shop.localhost", START);

    let d = run_in(&env, main, &["down"], &[]);
    assert_eq!((d.code, d.stderr.as_str()), (Some(0), "agentfs: stopped main.shop\n"), "{d:?}");
    assert!(!alive(server) && !alive(wrapper), "the whole tree is stopped");
    assert_eq!(env.home.run_files(), Vec::<String>::new(), "run/ is empty");
    assert_eq!(services(&env), Vec::<String>::new(), "no service record is left");
    let gone = run_in(&env, main, &["down"], &[]);
    assert_eq!((gone.code, gone.stderr.lines().count()), (Some(1), 1), "{gone:?}");
    assert!(gone.stderr.contains("main.shop does not run"), "{gone:?}");
}

/// A server that answers `/die` and then exits 1.
const ONCE: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
        if self.path == "/die":
            self.wfile.flush(); print("dying", flush=True); os._exit(1)
http.server.ThreadingHTTPServer(("127.0.0.1", 8000), H).serve_forever()
"#;

#[test]
fn on_failure_restarts_a_server_that_exits_and_gives_up_on_one_that_fails_at_once() {
    let env = Env::new("uprestart");
    let dir = TempDir::new("uponce");
    std::fs::write(dir.path().join("once.py"), ONCE).unwrap();
    let up = ["up", "--restart=on-failure", "--name", "once", "--instance", "a", "--", "python3", "once.py"];
    let r = run_in(&env, dir.path(), &up, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let first = rows_of(&env, "a.once").remove(0)["pid"].clone();
    assert_eq!(env.get("a.once.localhost", "/die").unwrap().status, 200);
    let died = Instant::now();
    wait_for("the restarted server to be routed", Duration::from_secs(2), || {
        env.get("a.once.localhost", "/").ok().filter(|r| r.status == 200 && rows_of(&env, "a.once")[0]["pid"] != first)
    });
    assert!(died.elapsed() < Duration::from_secs(2));
    let row = rows_of(&env, "a.once").remove(0);
    assert_eq!((row["restarts"].clone(), row["last_exit"].clone()), (1.into(), "exit status 1".into()), "{row}");
    assert!(env.run(&["ps"]).stdout.contains("live (1 restart, last: exit status 1)"));

    // `agentfs restart` starts it again at once and prints the URL; a client
    // polling meanwhile sees no error (the router holds its requests).
    let polling = Arc::new(AtomicBool::new(true));
    let poller =
        {
            let (polling, port) = (polling.clone(), env.port);
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while polling.load(Ordering::SeqCst) {
                    statuses.push(get_tcp(port, "a.once.localhost", "/", &[]).map_or((0, String::new()), |r| {
                        (r.status, if r.status == 200 { String::new() } else { r.body })
                    }));
                }
                statuses
            })
        };
    let again = run_in(&env, dir.path(), &["restart", "a.once"], &[]);
    std::thread::sleep(Duration::from_millis(300));
    polling.store(false, Ordering::SeqCst);
    let statuses = poller.join().unwrap();
    let url = format!("http://a.once.localhost:{}", env.port);
    assert_eq!((again.code, again.stdout.trim_end()), (Some(0), url.as_str()), "{again:?}");
    assert!(statuses.len() > 3 && statuses.iter().all(|s| s.0 == 200), "requests during the restart: {statuses:?}");
    assert_eq!(rows_of(&env, "a.once")[0]["restarts"], 2);
    assert_eq!(run_in(&env, dir.path(), &["down", "a.once"], &[]).code, Some(0));

    let boom = ["up", "--restart=on-failure", "--name", "boom", "--", "sh", "-c", "echo boom; exit 3"];
    let r = run_in(&env, dir.path(), &boom, &[]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let first = r.stderr.lines().next().unwrap();
    assert!(
        first.starts_with("agentfs: ") && first.contains("failed 6 times within 60 s (last: exit status 3)"),
        "{r:?}"
    );
    assert!(r.stderr.contains("| ") && r.stderr.contains(" boom"), "the log's last lines follow: {r:?}");
    let rows = ps_json(&env);
    let row = rows.iter().find(|r| r["app"] == "boom").unwrap();
    assert_eq!((row["state"].as_str(), row["restarts"].as_u64()), (Some("exited"), Some(5)), "{row}");
    let url = env.run(&["url", "boom"]);
    assert_eq!(url.code, Some(1), "{url:?}");
    assert_eq!(run_in(&env, dir.path(), &["down", "boom"], &[]).code, Some(0));
    assert_eq!(services(&env), Vec::<String>::new());
}

/// Prints 2000 numbered lines, then serves.
const CHATTY: &str = r#"
import http.server
for i in range(2000):
    print(f"line {i:04}")
http.server.HTTPServer(("127.0.0.1", 8000), http.server.SimpleHTTPRequestHandler).serve_forever()
"#;

#[test]
fn logs_rotate_at_the_limit_keeping_the_newest_lines_and_a_symlink_is_refused() {
    let env = Env::new("uplogs");
    let dir = TempDir::new("uplog");
    std::fs::write(dir.path().join("chatty.py"), CHATTY).unwrap();
    let limit = [("AGENTFS_LOG_MAX_BYTES", "4096")];
    let r =
        run_in(&env, dir.path(), &["up", "--name", "chatty", "--instance", "a", "--", "python3", "chatty.py"], &limit);
    assert_eq!(r.code, Some(0), "{r:?}");
    let log = env.home.path().join("logs/chatty.a.log");
    let tail = wait_for("the last numbered line", START, || {
        let t = env.run(&["logs", "-n", "3", "a.chatty"]).stdout;
        t.contains("line 1999").then_some(t)
    });
    let shown: Vec<&str> = tail.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(shown, ["line 1997", "line 1998", "line 1999"], "{tail}");
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= 4096 + 64, "the log is rotated at the limit: {size} bytes");
    let old = std::fs::read_to_string(log.with_extension("log.1")).unwrap();
    let now = std::fs::read_to_string(&log).unwrap();
    assert!(!old.contains("line 0000") && !now.contains("line 0000"), "the oldest lines are gone");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(env.run(&["down", "a.chatty"]).code, Some(0));

    // A symlink in the log's place is neither written nor read through.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "").unwrap();
    let linked = env.home.path().join("logs/linked.a.log");
    std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
    let r = run_in(
        &env,
        dir.path(),
        &["up", "--name", "linked", "--instance", "a", "--", "python3", "-m", "http.server"],
        &[],
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.lines().next().unwrap().contains("is a symlink"), "{r:?}");
    let l = env.run(&["logs", "a.linked"]);
    assert_eq!((l.code, l.stderr.lines().count()), (Some(1), 1), "{l:?}");
    assert!(l.stderr.contains("is a symlink"), "{l:?}");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "", "nothing was written through the symlink");
    assert_eq!(env.run(&["down", "a.linked"]).code, Some(0));
    assert_eq!(services(&env), Vec::<String>::new());
}

#[test]
fn bad_input_gets_one_line() {
    let env = Env::new("upbad");
    let dir = TempDir::new("upbad");
    for (args, code, needle) in [
        (&["up", "--restart=always", "--", "true"][..], 2, "not a restart policy"),
        (&["up", "--port", "x", "--", "true"][..], 1, "port"),
        (&["down", "nothing.shop"][..], 1, "nothing.shop does not run"),
        (&["restart", "nothing.shop"][..], 1, "does not run in the background"),
        (&["logs", "nothing.shop"][..], 1, "has no log"),
    ] {
        let r = run_in(&env, dir.path(), args, &[]);
        assert_eq!((r.code, r.stderr.lines().count()), (Some(code), 1), "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("agentfs: ") && r.stderr.contains(needle), "{args:?}: {r:?}");
    }
    let r = run_in(&env, dir.path(), &["up", "--", "true"], &[("AGENTFS_LOG_MAX_BYTES", "12")]);
    assert_eq!((r.code, r.stderr.lines().count()), (Some(1), 1), "{r:?}");
    assert!(r.stderr.contains("AGENTFS_LOG_MAX_BYTES"), "{r:?}");
}
