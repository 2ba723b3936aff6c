//! `agentfs url` as scripts and agents run it: in a git worktree whose branch
//! runs it prints that instance's URL (which answers through the router), in
//! one that does not it exits 1 with one line; TARGET, `--port`, `--json`,
//! and bad input.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(30);

/// `agentfs ARGS` run in `dir`.
fn run_in(env: &Env, dir: &Path, args: &[&str]) -> Finished {
    let mut c = env.agentfs(args);
    c.current_dir(dir);
    let mut p = Proc::spawn(c);
    let status = p.wait(Duration::from_secs(30));
    Finished { code: status.code(), stdout: p.stdout(), stderr: p.stderr() }
}

/// The one URL line a successful `agentfs url` printed.
fn url_line(r: &Finished) -> String {
    assert_eq!((r.code, r.stderr.as_str()), (Some(0), ""), "{r:?}");
    assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
    r.stdout.trim_end().to_owned()
}

/// GET / through the router at the host of `url` (`http://<host>:<port>`).
fn get_url(env: &Env, url: &str) -> Response {
    let host = url.strip_prefix("http://").and_then(|h| h.rsplit_once(':')).map(|(h, _)| h).expect(url);
    get_tcp(env.port, host, "/", &[]).unwrap()
}

/// One failure line on stderr, nothing on stdout, exit `code`.
fn assert_one_line_failure(r: &Finished, code: i32, needle: &str) {
    assert_eq!(r.code, Some(code), "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.starts_with("agentfs: ") && r.stderr.contains(needle), "{r:?}");
}

#[test]
fn url_in_a_worktree_prints_its_running_instance() {
    let env = Env::new("url");
    let dir = TempDir::new("urlrepo");
    let trees = shop_repo(dir.path(), &["feat", "idle"]);
    let (main, feat, idle) = (&trees[0], &trees[1], &trees[2]);
    let a = wrap_in(&env, main, &["--", "python3", "-m", "http.server", "8000"]);
    wait_stderr(&a, "agentfs: shop (main) →", START);
    let b = wrap_in(&env, feat, &["--", "python3", "-m", "http.server", "8000"]);
    wait_stderr(&b, "agentfs: shop (feat) →", START);

    let here = url_line(&run_in(&env, main, &["url"]));
    assert_eq!(here, format!("http://main.shop.localhost:{}", env.port));
    let r = get_url(&env, &here);
    assert_eq!((r.status, r.body.as_str()), (200, "main tree"), "{r:?}");
    let there = url_line(&run_in(&env, feat, &["url"]));
    assert_eq!(there, format!("http://feat.shop.localhost:{}", env.port));
    assert_eq!(get_url(&env, &there).body, "feat tree");

    assert_eq!(url_line(&run_in(&env, dir.path(), &["url", "feat.shop"])), there, "TARGET instance.app");
    assert_eq!(url_line(&run_in(&env, dir.path(), &["url", "shop"])), here, "an app: its default instance");
    let port = url_line(&run_in(&env, feat, &["url", "--port", "8000"]));
    assert_eq!(port, format!("http://8000.feat.shop.localhost:{}", env.port));
    assert_eq!(get_url(&env, &port).body, "feat tree");
    let r = run_in(&env, feat, &["url", "--port", "8001"]);
    assert_one_line_failure(&r, 1, "feat.shop has no port 8001 (it listens on 8000)");

    let r = run_in(&env, feat, &["url", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let row: Value = serde_json::from_str(&r.stdout).unwrap();
    let ps: Value = serde_json::from_str(&env.run(&["ps", "--json"]).stdout).unwrap();
    let same = ps.as_array().unwrap().iter().find(|p| p["instance"] == "feat").unwrap();
    assert_eq!(row["app"], "shop");
    assert_eq!(row["instance"], "feat");
    assert_eq!(row["port"], 8000);
    assert_eq!(row["url"], there.as_str());
    assert_eq!((&row["pid"], &row["socket"]), (&same["pid"], &same["socket"]), "ps --json's object");

    let r = run_in(&env, idle, &["url"]);
    assert_one_line_failure(&r, 1, "no instance idle.shop is running (start it with agentfs wrap -- <command>)");
    assert_one_line_failure(&run_in(&env, main, &["url", "other.shop"]), 1, "no instance other.shop is running");
}

#[test]
fn url_without_an_instance_or_with_a_bad_target_says_so_in_one_line() {
    let env = Env::new("urlnone");
    let dir = TempDir::new("urlnone");
    let plain = dir.path().join("blog");
    std::fs::create_dir(&plain).unwrap();
    let r = run_in(&env, &plain, &["url"]);
    assert_one_line_failure(&r, 1, "no instance d");
    assert!(r.stderr.contains(".blog is running (start it with agentfs wrap -- <command>)"), "{r:?}");
    assert_one_line_failure(&run_in(&env, &plain, &["url", "blog"]), 1, "no instance of blog is running");
    for bad in ["a.b.c.d", "UPPER!"] {
        assert_one_line_failure(&run_in(&env, &plain, &["url", bad]), 2, "TARGET is instance.app or app");
    }
    assert!(env.router_pid().is_none(), "url starts no router");
}

/// With the router on port 80 (in a private network namespace, as root or
/// in a user namespace), every URL the user is shown carries no port, and
/// that URL answers.
#[test]
fn with_the_router_on_port_80_urls_carry_no_port() {
    let env = Env::new("port80");
    let work = TempDir::new("port80");
    let mut c = std::process::Command::new("unshare");
    clean_env(&mut c);
    c.args(if is_root() { &["-n"][..] } else { &["-rn"][..] })
        .arg(fixture("port80.sh"))
        .arg(agentfs())
        .arg(work.path())
        .env("AGENTFS_HOME", env.home.path())
        .env("PYTHONUNBUFFERED", "1");
    let mut p = Proc::spawn(c);
    let status = p.wait(Duration::from_secs(60));
    let out = p.stdout();
    assert!(status.success(), "{status}: {}", p.output());
    let section = |name: &str| {
        let start = out.find(&format!("== {name}\n")).unwrap_or_else(|| panic!("no {name} in {out}"));
        let rest = &out[start + name.len() + 4..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_owned()
    };
    assert!(section("banner").contains("shop (main) → http://main.shop.localhost "), "{}", section("banner"));
    assert!(section("ps").contains(" http://main.shop.localhost (default)"), "{}", section("ps"));
    assert_eq!(section("url").trim(), "http://main.shop.localhost");
    assert!(section("dashboard").contains("href=\"http://main.shop.localhost\""), "{}", section("dashboard"));
    assert!(section("page").contains("Directory listing"), "the URL as printed answers: {out}");
    // (TLS on port 80, as in the trust hint, does need the port.)
    let http = out.lines().filter(|l| !l.contains("https://")).collect::<Vec<_>>().join("\n");
    let port_80 =
        http.match_indices("localhost:80").any(|(i, m)| !http[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(!port_80 && !http.contains("shop.localhost:"), "no http URL carries a port: {out}");
}
