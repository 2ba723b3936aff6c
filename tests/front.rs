//! The URL goes to the front end (issue 16, item 5): of a front end on 5173
//! (text/html) and a back end on 3001 (JSON) started first, the instance URL
//! serves the front end, `--port 3001` (or `AGENTFS_PORT`) makes it the back
//! end, the banner lists every port; an instance whose first listener is
//! redis and whose second is an HTTP app serves the HTTP app, and redis
//! never logs the probe as an attack.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(60);

/// Back end first, then the front end a second later.
fn pair_script() -> String {
    let server = fixture("kind_server.py");
    let s = server.display();
    format!("python3 {s} json 3001 & sleep 1; exec python3 {s} html 5173")
}

fn wrap_pair(env: &Env, dir: &std::path::Path, flags: &[&str], extra_env: &[(&str, &str)]) -> Proc {
    let script = pair_script();
    let mut args = vec!["wrap", "--name", "pair", "--instance", "a"];
    args.extend_from_slice(flags);
    args.extend(["--", "sh", "-c", &script]);
    let mut c = env.agentfs(&args);
    c.current_dir(dir);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    Proc::spawn(c)
}

/// Waits until both ports are routed and the banner lists them both.
fn settled(env: &Env, app: &Proc) -> String {
    wait_routed_port(env, "3001.a.pair.localhost");
    wait_routed_port(env, "5173.a.pair.localhost");
    wait_stderr(app, "(3001)", START);
    wait_stderr(app, "(5173)", START)
}

fn wait_routed_port(env: &Env, host: &str) {
    env.wait_routed(host, START);
}

#[test]
fn the_instance_url_serves_the_front_end_unless_a_port_is_chosen() {
    let env = Env::new("front");
    let dir = TempDir::new("front");
    let app = wrap_pair(&env, dir.path(), &[], &[]);
    let err = settled(&env, &app);
    let url = |p: Option<u16>| match p {
        None => format!("http://a.pair.localhost:{}", env.port),
        Some(p) => format!("http://{p}.a.pair.localhost:{}", env.port),
    };
    let banner = format!("agentfs: pair (a) → {} (5173) · {} (3001)", url(None), url(Some(3001)));
    assert!(err.contains(&banner), "{banner:?} not in:\n{err}");
    wait_for("the instance URL to serve the front end", START, || {
        env.get("a.pair.localhost", "/").ok().filter(|r| r.body.contains("front end"))
    });
    let rows: Value = serde_json::from_str(&env.run(&["ps", "--json"]).stdout).unwrap();
    let primary: Vec<_> = rows.as_array().unwrap().iter().filter(|r| r["primary"] == true).collect();
    assert_eq!((primary.len(), &primary[0]["port"]), (1, &5173.into()), "{rows}");
    drop(app);

    let dir = TempDir::new("front");
    let chosen = wrap_pair(&env, dir.path(), &["--port", "3001"], &[]);
    let err = settled(&env, &chosen);
    assert!(err.contains(&format!("→ {} (3001) · {} (5173)", url(None), url(Some(5173)))), "{err}");
    assert!(env.get("a.pair.localhost", "/").unwrap().body.contains("back end"));
    drop(chosen);

    let dir = TempDir::new("front");
    let by_env = wrap_pair(&env, dir.path(), &[], &[("AGENTFS_PORT", "3001")]);
    settled(&env, &by_env);
    assert!(env.get("a.pair.localhost", "/").unwrap().body.contains("back end"));
}

#[test]
fn a_bad_agentfs_port_is_a_one_line_error() {
    let env = Env::new("badport");
    let mut p = Proc::spawn({
        let mut c = env.agentfs(&["wrap", "--name", "x", "--", "true"]);
        c.env("AGENTFS_PORT", "web");
        c
    });
    let status = p.wait(START);
    assert!(!status.success());
    let err = p.stderr();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("AGENTFS_PORT \"web\" is not a port"), "{err}");
}

#[test]
fn redis_first_then_an_http_app_the_url_serves_the_http_app() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        return eprintln!("skipped: redis-server is not installed (.ci/run installs it)");
    }
    let env = Env::new("redisfront");
    let dir = TempDir::new("redisfront");
    std::fs::write(dir.path().join("index.html"), "<!doctype html>the http app").unwrap();
    let (redis, web) = (free_port().to_string(), free_port().to_string());
    let script =
        format!("redis-server --port {redis} --save '' --appendonly no & sleep 1; exec python3 -m http.server {web}");
    let mut c = env.agentfs(&["wrap", "--name", "stack", "--instance", "a", "--", "sh", "-c", &script]);
    c.current_dir(dir.path());
    let app = Proc::spawn(c);
    env.wait_routed(&format!("{web}.a.stack.localhost"), START);
    wait_stderr(&app, &format!("port {redis}: not HTTP"), START);
    // Only ask the instance URL once the router routes it to the HTTP app:
    // a request sent to redis before would be logged (by redis, rightly).
    wait_for("the router to make the HTTP app primary", START, || {
        let routes: Value = serde_json::from_str(&env.get("localhost", "/api/routes").ok()?.body).ok()?;
        let primary = routes["apps"][0]["instances"][0]["primary_port"].as_u64()?;
        (primary.to_string() == web).then_some(())
    });
    wait_for("the instance URL to serve the HTTP app", START, || {
        env.get("a.stack.localhost", "/").ok().filter(|r| r.body.contains("the http app"))
    });
    let out = app.output();
    assert!(!out.contains("SECURITY ATTACK"), "redis logged the probe:\n{out}");
    assert!(out.contains("Ready to accept connections"), "redis ran:\n{out}");
}
