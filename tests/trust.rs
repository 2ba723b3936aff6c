//! `agentfs trust` (issue 18, acceptance 4 and 5), with `$HOME` pointed at a
//! temporary directory so that only its NSS databases change (and `--user`,
//! so that a test run as root never touches the system store): the CA goes
//! into a fresh `~/.pki/nssdb` and a Firefox profile, `certutil -L` and
//! `--status` show it, `--remove` takes it out; wrap's banner, `ps` and
//! `AGENTFS_URL` switch from `http://` (with a one-time hint) to `https://`;
//! `NODE_EXTRA_CA_CERTS` names the CA unless the user set it. Then a real
//! browser: headless Chromium, trusting the CA only through that NSS
//! database, loads a wrapped Vite app over h2 and receives an HMR update.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const START: Duration = Duration::from_secs(30);
const NICK: &str = "agentfs local CA (";

/// `agentfs ARGS` with `HOME` set to `user`.
fn agentfs_as(env: &Env, user: &Path, args: &[&str]) -> Command {
    let mut c = env.agentfs(args);
    c.env("HOME", user).env_remove("NODE_EXTRA_CA_CERTS");
    c
}

fn run_as(env: &Env, user: &Path, args: &[&str]) -> Finished {
    let mut p = Proc::spawn(agentfs_as(env, user, args));
    let status = p.wait(Duration::from_secs(30));
    Finished { code: status.code(), stdout: p.stdout(), stderr: p.stderr() }
}

fn certutil(args: &[&str], db: &Path) -> String {
    let out = Command::new("certutil").args(args).arg("-d").arg(format!("sql:{}", db.display())).output();
    let out = out.expect("certutil runs (install libnss3-tools)");
    assert!(out.status.success(), "certutil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fresh_db(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    certutil(&["-N", "--empty-password"], dir);
}

/// Wraps `cmd` as shop/main with `HOME` = `user` (and `extra` variables),
/// waits for its banner; returns it with the banner line.
fn wrap_shop(env: &Env, user: &Path, cmd: &[&str], extra: &[(&str, &str)]) -> (Proc, String) {
    let mut args = vec!["wrap", "--name", "shop", "--instance", "main", "--"];
    args.extend_from_slice(cmd);
    let mut c = agentfs_as(env, user, &args);
    c.current_dir(user);
    for (k, v) in extra {
        c.env(k, v);
    }
    let p = Proc::spawn(c);
    let err = wait_stderr(&p, "agentfs: shop (main) →", START);
    let banner = err.lines().find(|l| l.starts_with("agentfs: shop (main) →")).unwrap().to_owned();
    (p, banner)
}

/// What the env_echo app saw, through the router.
fn app_env(env: &Env) -> Value {
    serde_json::from_str(&env.wait_routed("main.shop.localhost", START).body).unwrap()
}

fn stop(mut p: Proc) -> String {
    p.signal(libc::SIGTERM);
    p.wait(Duration::from_secs(10));
    p.stderr()
}

const ECHO_VARS: [&str; 2] = ["AGENTFS_URL", "NODE_EXTRA_CA_CERTS"];

fn python_echo() -> Vec<String> {
    let script = fixture("env_echo.py").display().to_string();
    ["python3", &script, "8000"].into_iter().map(String::from).chain(ECHO_VARS.map(String::from)).collect()
}

#[test]
fn trust_fills_fresh_nss_dbs_status_names_them_remove_empties_them_and_urls_follow() {
    let env = Env::new("trust");
    let user = TempDir::new("trusthome");
    let (chrome_db, firefox_db) = (user.path().join(".pki/nssdb"), user.path().join(".mozilla/firefox/t.default"));
    fresh_db(&chrome_db);
    fresh_db(&firefox_db);
    let pem = env.home.path().join("ca/root.pem").display().to_string();
    let (http, https) =
        (format!("http://main.shop.localhost:{}", env.port), format!("https://main.shop.localhost:{}", env.port));
    let hint = format!("agentfs: run `agentfs trust` for {https}");

    let py = python_echo();
    let py: Vec<&str> = py.iter().map(String::as_str).collect();
    let (app, banner) = wrap_shop(&env, user.path(), &py, &[]);
    assert!(banner.contains(&format!("→ {http} ")), "{banner}");
    let seen = app_env(&env);
    assert_eq!((seen["AGENTFS_URL"].as_str(), seen["NODE_EXTRA_CA_CERTS"].as_str()), (Some(&*http), Some(&*pem)));
    assert_eq!(stop(app).matches(&hint).count(), 1, "the hint, once per wrap");

    let t = run_as(&env, user.path(), &["trust", "--user"]);
    assert_eq!(t.code, Some(0), "{t:?}");
    for db in [&chrome_db, &firefox_db] {
        assert!(t.stdout.contains(&db.display().to_string()), "each step says what it changed: {t:?}");
        assert!(certutil(&["-L"], db).contains(NICK), "certutil lists the CA in {}", db.display());
    }
    let status = run_as(&env, user.path(), &["trust", "--status"]);
    assert!(status.stdout.contains(&format!("✓ NSS database {}", chrome_db.display())), "{status:?}");
    assert!(status.stdout.contains(&format!("✓ NSS database {}", firefox_db.display())), "{status:?}");
    assert!(status.stdout.contains("URLs: https://"), "{status:?}");

    let node = concat!(
        "require('http').createServer((q, s) => s.end(JSON.stringify({AGENTFS_URL: process.env.AGENTFS_URL, ",
        "NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? null}))).listen(3000)"
    );
    let (app, banner) = wrap_shop(&env, user.path(), &["node", "-e", node], &[]);
    assert!(banner.contains(&format!("→ {https} ")), "{banner}");
    let seen = app_env(&env);
    assert_eq!((seen["AGENTFS_URL"].as_str(), seen["NODE_EXTRA_CA_CERTS"].as_str()), (Some(&*https), Some(&*pem)));
    let routes = env.get("localhost", "/api/routes").unwrap();
    assert!(routes.body.contains(&format!("\"url\":\"{https}\"")), "the dashboard's URLs follow: {}", routes.body);
    let unknown = env.get("nope.localhost", "/").unwrap();
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body.contains(&https) && !unknown.body.contains(&http),
        "the 404's routes follow: {}",
        unknown.body
    );
    let ps: Value = serde_json::from_str(&run_as(&env, user.path(), &["ps", "--json"]).stdout).unwrap();
    assert_eq!(ps[0]["url"], https, "{ps}");
    let table = run_as(&env, user.path(), &["ps"]).stdout;
    assert!(table.contains(&https), "{table}");
    assert!(!stop(app).contains("agentfs trust"), "no hint once trusted");

    let theirs = user.path().join("corp-roots.pem").display().to_string();
    let (app, _) = wrap_shop(&env, user.path(), &py, &[("NODE_EXTRA_CA_CERTS", &theirs)]);
    assert_eq!(app_env(&env)["NODE_EXTRA_CA_CERTS"].as_str(), Some(&*theirs), "the user's own is left alone");
    stop(app);
    let mut doctor = agentfs_as(&env, user.path(), &["doctor"]);
    let out = doctor.env("NODE_EXTRA_CA_CERTS", &theirs).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let line = out.lines().find(|l| l.contains("NODE_EXTRA_CA_CERTS")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(&theirs) && line.contains(&pem), "one line naming both files: {line}");

    let r = run_as(&env, user.path(), &["trust", "--remove"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for db in [&chrome_db, &firefox_db] {
        assert!(!certutil(&["-L"], db).contains(NICK), "removed from {}: {r:?}", db.display());
    }
    let status = run_as(&env, user.path(), &["trust", "--status"]);
    assert!(status.stdout.contains(&format!("✗ NSS database {}", chrome_db.display())), "{status:?}");
    assert!(status.stdout.contains("URLs: http://"), "{status:?}");
    assert!(!env.home.path().join("ca/trusted").exists());
}

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser(user: &Path, url: &str, module: &Path, flags: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(fixture("browser_hmr.py"))
        .arg(url)
        .arg(module)
        .args(flags)
        .env("PYTHONUSERBASE", python_user_base())
        .env("HOME", user)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser_hmr.py failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn module_text(text: &str) -> String {
    format!("document.getElementById('app').textContent = {text:?};\nif (import.meta.hot) import.meta.hot.accept();\n")
}

fn vite_project(dir: &Path) -> PathBuf {
    let proj = dir.join("shop");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("package.json"), r#"{"name":"shop","private":true,"scripts":{"dev":"vite"}}"#).unwrap();
    let html = "<!doctype html><title>shop</title><div id=app></div><script type=module src=/main.js></script>";
    std::fs::write(proj.join("index.html"), html).unwrap();
    std::fs::write(proj.join("main.js"), module_text("version one")).unwrap();
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "vite"])
        .current_dir(&proj)
        .output();
    let install = install.expect("npm runs");
    assert!(install.status.success(), "npm install vite: {}", String::from_utf8_lossy(&install.stderr));
    proj
}

#[test]
fn chromium_trusting_the_ca_through_nss_loads_a_vite_app_over_h2_and_gets_hmr_updates() {
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: install Debian's chromium (see .ci/run)");
    let env = Env::new("trustbrowser");
    let user = TempDir::new("trustbrowserhome");
    let proj = vite_project(user.path());
    let mut c = agentfs_as(&env, user.path(), &["wrap", "--instance", "main", "--", "npm", "run", "dev"]);
    c.current_dir(&proj);
    let app = Proc::spawn(c);
    wait_stderr(&app, "agentfs: shop (main) →", Duration::from_secs(60));
    env.wait_routed("main.shop.localhost", START);
    let url = format!("https://main.shop.localhost:{}/", env.port);
    let module = proj.join("main.js");

    let untrusted = browser(user.path(), &url, &module, &["--expect-cert-error"]);
    let error = untrusted["error"].as_str().unwrap_or_default();
    assert!(error.contains("ERR_CERT_AUTHORITY_INVALID"), "before `agentfs trust`: {untrusted}");

    let t = run_as(&env, user.path(), &["trust", "--user"]);
    assert_eq!(t.code, Some(0), "{t:?}");
    assert!(certutil(&["-L"], &user.path().join(".pki/nssdb")).contains(NICK), "{t:?}");

    let seen = browser(user.path(), &url, &module, &[]);
    assert_eq!(seen["protocol"], "h2", "{seen}");
    assert_eq!(seen["connected"], true, "Vite's HMR WebSocket came up: {seen}");
    assert_eq!(seen["updated"], true, "the edit reached the page: {seen}");
    assert_eq!(seen["reloaded"], false, "as an HMR update, not a reload: {seen}");
    stop(app);
}
