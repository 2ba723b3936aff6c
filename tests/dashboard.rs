//! The dashboard and the router's error pages in a real browser (headless
//! Chromium driven by Playwright for Python: `fixtures/dashboard_browser.py`
//! says what it checks): live cards without a reload, "down" and "crashed"
//! told by the router, no JavaScript needed, a link home and no horizontal
//! overflow on every page; screenshots in `target/artifacts/dashboard/`.
//! Also the favicon, the event stream's format, and `agentfs open`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts/dashboard")
}

#[test]
fn the_dashboard_is_live_and_every_page_says_what_to_do_in_a_real_browser() {
    let env = Env::new("dash-browser");
    let work = TempDir::new("dash-browser");
    let mut c = Command::new("python3");
    clean_env(&mut c);
    c.arg(fixture("dashboard_browser.py"))
        .arg(agentfs())
        .arg(env.port.to_string())
        .arg(work.path())
        .arg(artifacts())
        .env("AGENTFS_HOME", env.home.path())
        .env("AGENTFS_HTTP_PORT", env.port.to_string())
        .env("PYTHONUSERBASE", python_user_base())
        .env("PYTHONUNBUFFERED", "1");
    let mut p = Proc::spawn(c);
    let status = p.wait(Duration::from_secs(240));
    assert!(status.success(), "dashboard_browser.py failed ({status}): {}", p.output());
    let seen: Value = serde_json::from_str(p.stdout().trim()).unwrap_or_else(|e| panic!("{e}: {}", p.output()));
    assert_eq!((&seen["/favicon.ico"], &seen["/favicon.svg"]), (&200.into(), &200.into()), "{seen}");
    for name in ["dashboard", "404", "502", "503", "421", "508"] {
        for shot in ["light-1280", "light-390", "dark-1280", "dark-390"] {
            let file = artifacts().join(format!("{name}-{shot}.png"));
            assert!(std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000), "no screenshot {}", file.display());
        }
    }
}

/// `GET /api/events` is an event stream: the cards now, and again when an instance starts.
#[test]
fn the_event_stream_sends_the_cards_and_their_changes() {
    let env = Env::new("dash-events");
    assert_eq!(env.run(&["router", "start"]).code, Some(0));
    let mut s = TcpStream::connect(("127.0.0.1", env.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut next_data = || loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(json) = line.strip_prefix("data: ") {
            return serde_json::from_str::<Value>(json).unwrap();
        }
        assert!(!line.contains("HTTP/1.1") || line.contains("200"), "{line}");
    };
    let first = next_data();
    assert_eq!(first["cards"][0]["key"], "empty", "{first}");
    let dir = TempDir::new("dash-events-app");
    let args = ["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"];
    let _app = wrap_in(&env, dir.path(), &args);
    let mut keys = Vec::new();
    let changed = loop {
        let d = next_data();
        keys.push(d["cards"][0]["key"].clone());
        if d["cards"][0]["key"] == "i/shop/main" {
            break d;
        }
        assert!(keys.len() < 5, "no live card: {keys:?}");
    };
    assert!(changed["cards"][0]["html"].as_str().unwrap().contains("badge live"), "{changed}");
}

/// `agentfs open` hands the instance's URL (or the dashboard's) to $BROWSER.
#[test]
fn open_hands_the_url_to_the_browser() {
    let env = Env::new("open");
    let work = TempDir::new("open");
    let browser = work.path().join("browser");
    let opened = work.path().join("opened");
    std::fs::write(&browser, format!("#!/bin/sh\necho \"$1\" >> {}\n", opened.display())).unwrap();
    Command::new("chmod").arg("+x").arg(&browser).status().unwrap();
    let b = browser.display().to_string();
    let args = ["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"];
    let _app = wrap_in(&env, work.path(), &args);
    env.wait_routed("main.shop.localhost", Duration::from_secs(20));
    let r = env.run_with(&["open", "main.shop"], &[("BROWSER", &b)]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = env.run_with(&["open"], &[("BROWSER", &b)]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let urls = std::fs::read_to_string(&opened).unwrap();
    let p = env.port;
    assert_eq!(
        urls,
        format!("http://main.shop.localhost:{p}\nhttp://localhost:{p}/\n"),
        "here runs nothing: the dashboard"
    );
    let bad = env.run_with(&["open", "nope.shop"], &[("BROWSER", &b)]);
    assert!(bad.code == Some(1) && bad.stderr.lines().count() == 1, "{bad:?}");
}

/// `POST /api/stop/<instance>.<app>`: refused without the page's token, from
/// another origin or site; with them, it stops the instance as `agentfs down` does.
#[test]
fn the_stop_api_takes_only_the_dashboard_page_s_own_requests() {
    let env = Env::new("dash-stop");
    let dir = TempDir::new("dash-stop");
    let args = ["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"];
    let mut app = wrap_in(&env, dir.path(), &args);
    env.wait_routed("main.shop.localhost", Duration::from_secs(20));
    let page = env.get("localhost", "/").unwrap().body;
    let token = page.split("<meta name=agentfs-token content=").nth(1).and_then(|r| r.split('>').next());
    let token = token.unwrap_or_else(|| panic!("no token in the page: {page}")).to_owned();
    assert!(page.contains("data-stop=\"main.shop\""), "a stop button: {page}");
    let host = format!("localhost:{}", env.port);
    let origin = format!("http://{host}");
    let post = |headers: &[(&str, &str)]| {
        let r = request_tcp(env.port, "POST", &host, "/api/stop/main.shop", headers).unwrap();
        (r.status, r.body)
    };
    let refused = [
        vec![("origin", origin.as_str())],
        vec![("origin", "http://evil.localhost"), ("x-agentfs-token", token.as_str())],
        vec![("x-agentfs-token", token.as_str())],
        vec![("origin", origin.as_str()), ("x-agentfs-token", "0123"), ("sec-fetch-site", "same-origin")],
        vec![("origin", origin.as_str()), ("x-agentfs-token", token.as_str()), ("sec-fetch-site", "cross-site")],
    ];
    for headers in &refused {
        let (status, body) = post(headers);
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // Another user, with everything else right (only root can be another user here).
    if is_root() {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-X", "POST", "-H", &format!("origin: {origin}"), "-H", &format!("x-agentfs-token: {token}")])
            .arg(format!("http://{host}/api/stop/main.shop"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "uid 65534 is refused: {out:?}");
    }
    assert!(app.child.try_wait().unwrap().is_none(), "still running after the refused requests");
    let (status, body) = post(&[("origin", &origin), ("x-agentfs-token", &token), ("sec-fetch-site", "same-origin")]);
    assert_eq!(status, 202, "{body}");
    let exit = app.wait(Duration::from_secs(20));
    assert!(exit.code().is_some() || exit.signal().is_some(), "{exit:?}");
    let (status, _) = post(&[("origin", &origin), ("x-agentfs-token", &token)]);
    assert_eq!(status, 404, "stopped: nothing runs as main.shop");
}

/// A background instance's card shows its last log lines to the router's
/// own user (the event stream sends the same cards); another user sees none.
#[test]
fn a_background_instance_s_card_shows_its_last_log_lines_to_its_user_only() {
    let env = Env::new("dash-log");
    let dir = TempDir::new("dash-log");
    let server = "print('hello from the app', flush=True)\nimport http.server as h\n\
                  h.HTTPServer(('127.0.0.1', 8000), h.SimpleHTTPRequestHandler).serve_forever()";
    let mut c = env.agentfs(&["up", "--name", "shop", "--instance", "main", "--", "python3", "-c", server]);
    c.current_dir(dir.path());
    let mut up = Proc::spawn(c);
    assert!(up.wait(Duration::from_secs(30)).success(), "{}", up.output());
    let page = wait_for("the log line on the card", Duration::from_secs(10), || {
        let page = env.get("localhost", "/").ok()?.body;
        page.contains("hello from the app").then_some(page)
    });
    assert!(page.contains("<pre class=log"), "{page}");
    if is_root() {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s"])
            .arg(format!("http://localhost:{}/", env.port))
            .output()
            .unwrap();
        let other = String::from_utf8_lossy(&out.stdout);
        assert!(other.contains("data-key=\"i/shop/main\"") && !other.contains("hello from the app"), "{other}");
    }
}
