//! HTTPS on the router's port (issue 18): a wrapped python3 http.server
//! answers `https://main.shop.localhost:<port>/` over h2 and HTTP/1.1 with a
//! certificate of the local CA naming exactly that host, plain http on the
//! same port still works, an SNI of evil.com gets no certificate, and a
//! corrupt `ca/root.key` turns HTTPS off with one line naming the file while
//! plain HTTP goes on.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const START: Duration = Duration::from_secs(30);

/// `curl` with the CA, printing `<status> <http version>`.
fn curl(env: &Env, url: &str, flags: &[&str]) -> String {
    let ca = env.home.path().join("ca/root.pem");
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "10", "--cacert"]);
    c.arg(&ca).args(flags).arg(url);
    String::from_utf8_lossy(&c.output().expect("curl runs").stdout).into_owned()
}

fn serve_shop(env: &Env, dir: &TempDir) -> Proc {
    let args = ["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"];
    let p = wrap_in(env, dir.path(), &args);
    wait_stderr(&p, "agentfs: shop (main) →", START);
    env.wait_routed("main.shop.localhost", START);
    p
}

#[test]
fn https_h2_and_http1_and_plain_share_the_port() {
    let env = Env::new("https");
    let dir = TempDir::new("https");
    let mut app = serve_shop(&env, &dir);
    let url = format!("https://main.shop.localhost:{}/", env.port);
    assert_eq!(curl(&env, &url, &["--http2"]), "200 2");
    // python3's http.server answers HTTP/1.0, which curl reports as "1".
    let h1 = curl(&env, &url, &["--http1.1"]);
    assert!(h1.starts_with("200 1"), "https over HTTP/1.1: {h1}");
    let plain = curl(&env, &format!("http://main.shop.localhost:{}/", env.port), &[]);
    assert!(plain.starts_with("200 1"), "plain http: {plain}");
    let evil = format!("evil.com:{}:127.0.0.1", env.port);
    let refused = curl(&env, &format!("https://evil.com:{}/", env.port), &["--resolve", &evil]);
    assert!(refused.starts_with("000"), "evil.com got an answer: {refused}");

    let sh = format!(
        "echo | openssl s_client -connect 127.0.0.1:{} -servername main.shop.localhost 2>/dev/null \
         | openssl x509 -noout -ext subjectAltName",
        env.port
    );
    let san = Command::new("sh").args(["-c", &sh]).output().unwrap();
    let san = String::from_utf8_lossy(&san.stdout);
    assert!(san.contains("DNS:main.shop.localhost") && !san.contains('*'), "{san}");
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
}

#[test]
fn a_corrupt_root_key_turns_https_off_and_names_the_file() {
    let env = Env::new("httpsbad");
    let dir = TempDir::new("httpsbad");
    let ca = env.home.path().join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    std::fs::set_permissions(&ca, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(ca.join("root.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::write(ca.join("root.key"), "garbage").unwrap();
    let mut app = serve_shop(&env, &dir);
    let plain = curl(&env, &format!("http://main.shop.localhost:{}/", env.port), &[]);
    assert!(plain.starts_with("200 1"), "plain http: {plain}");
    let log = std::fs::read_to_string(env.home.path().join("logs/router.log")).unwrap();
    let line = log.lines().find(|l| l.contains("HTTPS is off")).unwrap_or_else(|| panic!("no line in {log}"));
    assert!(line.contains("root.key") && line.contains("fix:"), "{line}");
    assert_eq!(std::fs::read(ca.join("root.key")).unwrap(), b"garbage", "never replaced");
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
}

fn ws_client(env: &Env, mode: &str, message: &str) -> String {
    let ca = env.home.path().join("ca/root.pem");
    let out = Command::new("python3")
        .arg(fixture("tls_ws_client.py"))
        .args([mode, "main.shop.localhost", &env.port.to_string()])
        .arg(&ca)
        .arg(message)
        .output()
        .expect("python3 runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{mode} WebSocket client failed: {err}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn websockets_echo_over_h2_extended_connect_and_over_http1_upgrade_inside_tls() {
    let env = Env::new("httpsws");
    let dir = TempDir::new("httpsws");
    let script = fixture("ws_echo.py");
    let args = ["--name", "shop", "--instance", "main", "--", "python3", script.to_str().unwrap()];
    let mut app = wrap_in(&env, dir.path(), &args);
    wait_stderr(&app, "agentfs: shop (main) →", START);
    env.wait_routed("main.shop.localhost", START);
    assert_eq!(ws_client(&env, "h2", "over h2"), "echo: over h2");
    assert_eq!(ws_client(&env, "http1", "over http/1.1"), "echo: over http/1.1");
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn only_routed_hosts_get_certificates_and_an_sni_flood_costs_nothing() {
    let env = Env::new("httpsflood");
    let dir = TempDir::new("httpsflood");
    let mut app = serve_shop(&env, &dir);
    let url = |host: &str| format!("https://{host}:{}/", env.port);
    let resolve = |host: &str| format!("{host}:{}:127.0.0.1", env.port);
    for host in ["main.shop.localhost", "shop.localhost", "localhost"] {
        let got = curl(&env, &url(host), &["--resolve", &resolve(host)]);
        assert!(!got.starts_with("000"), "{host} gets a certificate: {got}");
    }
    for host in ["ghost.shop.localhost", "nope.localhost", "evil.com"] {
        let got = curl(&env, &url(host), &["--resolve", &resolve(host)]);
        assert!(got.starts_with("000"), "{host} must get no certificate: {got}");
    }
    let hosts = env.home.path().join("ca/hosts");
    let issued = || std::fs::read_dir(&hosts).map_or(0, |d| d.count());
    assert_eq!(issued(), 3, "one leaf per served host");

    let router = env.router_pid().expect("a router runs");
    let before = rss_kib(router);
    let out = Command::new("python3")
        .arg(fixture("sni_flood.py"))
        .args([&env.port.to_string(), "10000"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "no unknown name got a certificate");
    assert_eq!(issued(), 3, "nothing written for unknown names");
    let grown = rss_kib(router).saturating_sub(before);
    assert!(grown < 8 * 1024, "10,000 unknown names grew the router by {grown} KiB");
    let ok = curl(&env, &url("main.shop.localhost"), &[]);
    assert!(ok.starts_with("200"), "still serving: {ok}");
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
}

/// curl's body for `url` (with the CA), whatever the exit (a timeout included).
fn curl_body(env: &Env, url: &str, flags: &[&str]) -> String {
    let ca = env.home.path().join("ca/root.pem");
    let mut c = Command::new("curl");
    c.args(["-s", "--cacert"]).arg(&ca).args(flags).arg(url);
    String::from_utf8_lossy(&c.output().expect("curl runs").stdout).into_owned()
}

#[test]
fn requests_over_tls_are_marked_https_and_streams_are_not_buffered() {
    let env = Env::new("httpsproto");
    let dir = TempDir::new("httpsproto");
    let script = fixture("proto_echo.py");
    let args = ["--name", "shop", "--instance", "main", "--", "python3", script.to_str().unwrap()];
    let mut app = wrap_in(&env, dir.path(), &args);
    env.wait_routed("main.shop.localhost", START);
    let https = format!("https://main.shop.localhost:{}", env.port);
    let plain = format!("http://main.shop.localhost:{}", env.port);
    for flag in ["--http1.1", "--http2"] {
        assert_eq!(curl_body(&env, &format!("{https}/"), &[flag, "--max-time", "10"]), "https\n", "{flag}");
        let started = std::time::Instant::now();
        let sse = curl_body(&env, &format!("{https}/sse"), &[flag, "--max-time", "3", "-N"]);
        assert!(sse.contains("data: one"), "{flag}: the event must arrive while the response is open: {sse:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(curl_body(&env, &format!("{plain}/"), &["--max-time", "10"]), "http\n");
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
}
