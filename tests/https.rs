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
