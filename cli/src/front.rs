//! Which port an instance's URL reaches, and the banner that says so. The
//! primary port is the one chosen with `wrap --port N` / `AGENTFS_PORT`
//! while it listens; else the front end: the first port (in listening
//! order) whose answer to `GET /` is `text/html`; else the first port that
//! listened (`agentfs_registry::model::choose_primary`, which the router and
//! `ps` apply too). The wrapper probes each new port of its instance once
//! and writes the front port into its record. Once the listeners settle (no
//! new port for half a second), and again whenever the ports change, it
//! prints every port with its URL, primary first:
//! `agentfs: pair (a) → http://a.pair.localhost (5173) · http://3001.a.pair.localhost (3001)`.
//!
//! The probe never sends a non-HTTP server a request it would log: it says
//! nothing while the server might greet (SMTP, MySQL: not HTTP), then sends
//! only the request line, and stops if anything answers that line alone (an
//! HTTP server waits for the headers; redis answers `-ERR` at once and never
//! sees the `Host:` line it reports as an attack).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use agentfs_registry::names::hostname;
use agentfs_registry::scan;
use agentfs_registry::sunpath::SockPath;
use agentfs_registry::{Home, Target, env};

use crate::live_record::LiveRecord;
use crate::wrap::Instance;

/// How often the watch looks for new ports once one listens.
pub const POLL: Duration = Duration::from_millis(100);
/// Quiet time after the last new port before the banner is printed.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a server may take to greet, or to answer a lone request line.
const QUIET: Duration = Duration::from_millis(150);
/// How long the answer to the probe may take.
const ANSWER: Duration = Duration::from_secs(2);

/// `--port N`, else `AGENTFS_PORT`: the primary port the user chose.
pub fn chosen_port(flag: Option<&str>) -> Result<Option<u16>> {
    let (value, what) = match flag {
        Some(v) => (v.to_owned(), "--port".to_owned()),
        None => match std::env::var(env::PORT) {
            Ok(v) => (v, env::PORT.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => bail!("{what} {value:?} is not a port (1-65535); give the port the instance's URL should reach"),
    }
}

/// The instance's ports as the watch has seen them.
pub struct Front {
    live: Arc<LiveRecord>,
    chosen: Option<u16>,
    front: Option<u16>,
    /// In listening order.
    ports: Vec<u16>,
    last_new: Option<Instant>,
    announced: Option<String>,
    /// What the router says of each port's `localhost:<port>` (see `watch`).
    originals: Vec<String>,
    /// Ports the probe found speaking something else than HTTP: reached on
    /// their original port, not by URL.
    not_http: Vec<u16>,
}

impl Front {
    pub fn new(live: Arc<LiveRecord>, chosen: Option<u16>) -> Front {
        Front {
            live,
            chosen,
            front: None,
            ports: Vec::new(),
            last_new: None,
            announced: None,
            originals: Vec::new(),
            not_http: Vec::new(),
        }
    }

    /// New ports listen: probe them (unless a port was chosen or the front
    /// end is known) and record the front end.
    pub fn saw(&mut self, home: &Home, me: &Instance, new: &[u16]) {
        if new.is_empty() {
            return;
        }
        self.ports.extend(new);
        self.originals.extend(new.iter().map(|p| crate::watch::also_on_original_port(home, me, *p)));
        self.last_new = Some(Instant::now());
        if self.chosen.is_some() || self.front.is_some() {
            return;
        }
        let Ok(snap) = scan::scan_instance(&home.run_dir(), &me.app, &me.instance) else { return };
        let host = format!("{}:{}", hostname(&me.app, Some(&me.instance)), me.router_port);
        for port in new {
            let target = snap.listeners.iter().find(|l| l.port() == *port).map(|l| l.target.clone());
            match target.map(|t| probe_target(&t, &host)) {
                Some(Answer::Html) => {
                    self.front = Some(*port);
                    self.live.update(|r| r.front_port = Some(*port));
                    return;
                }
                Some(Answer::NotHttp) => self.not_http.push(*port),
                _ => {}
            }
        }
    }

    /// Prints the banner once the ports have settled and it would differ
    /// from the last one printed.
    pub fn announce_if_settled(&mut self, me: &Instance) {
        if self.last_new.is_none_or(|t| t.elapsed() < SETTLE) {
            return;
        }
        let line = self.banner(me);
        if self.announced.as_ref() != Some(&line) {
            eprintln!("{line}");
            if let Some(hint) = me.https_hint().filter(|_| self.announced.is_none()) {
                eprintln!("{hint}");
            }
            self.announced = Some(line);
        }
    }

    fn primary(&self) -> Option<u16> {
        let listens = |p: &u16| self.ports.contains(p);
        self.chosen.filter(listens).or(self.front.filter(listens)).or(self.ports.first().copied())
    }

    /// `agentfs: <app> (<instance>) → <url> (<port>) · <port url> (<port>)…`
    fn banner(&self, me: &Instance) -> String {
        let primary = self.primary();
        let host = hostname(&me.app, Some(&me.instance));
        let others = self.ports.iter().copied().filter(|p| Some(*p) != primary);
        let urls: Vec<String> = primary
            .into_iter()
            .chain(others)
            .map(|p| match (Some(p) == primary, self.not_http.contains(&p)) {
                (_, true) => format!("port {p}: not HTTP, reached on its own port"),
                (true, false) => format!("{} ({p})", me.url),
                (false, false) => format!("{} ({p})", me.url_of(&format!("{p}.{host}"))),
            })
            .collect();
        format!("agentfs: {} ({}) → {}{}", me.app, me.instance, urls.join(" · "), self.originals.concat())
    }
}

/// What a listener's answer to the probe says.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// `GET /` answered with `text/html`: the front end.
    Html,
    /// Another HTTP answer, or none.
    Other,
    /// It greeted first, or answered the request line alone (redis).
    NotHttp,
}

/// Probes the listener (see the module doc).
fn probe_target(target: &Target, host: &str) -> Answer {
    let answer = match target {
        Target::Unix(path) => {
            let Ok(p) = SockPath::new(path) else { return Answer::Other };
            UnixStream::connect(p.as_path()).map(|s| probe(s, host, UnixStream::set_read_timeout))
        }
        Target::Tcp { host: h, port } => {
            let Ok(ip) = h.parse() else { return Answer::Other };
            TcpStream::connect_timeout(&SocketAddr::new(ip, *port), ANSWER)
                .map(|s| probe(s, host, TcpStream::set_read_timeout))
        }
    };
    answer.unwrap_or(Answer::Other)
}

fn probe<S: Read + Write>(mut s: S, host: &str, timeout: fn(&S, Option<Duration>) -> io::Result<()>) -> Answer {
    let silent = |s: &mut S| {
        let quiet = |e: io::Error| matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut);
        timeout(s, Some(QUIET)).is_ok() && s.read(&mut [0u8; 1]).is_err_and(quiet)
    };
    if !silent(&mut s) || s.write_all(b"GET / HTTP/1.1\r\n").is_err() || !silent(&mut s) {
        drain(&mut s, timeout);
        return Answer::NotHttp;
    }
    let rest = format!("Host: {host}\r\nAccept: text/html\r\nUser-Agent: agentfs-probe\r\nConnection: close\r\n\r\n");
    if s.write_all(rest.as_bytes()).is_err() || timeout(&s, Some(ANSWER)).is_err() {
        return Answer::Other;
    }
    let mut buf = [0u8; 16 * 1024];
    let mut len = 0;
    while len < buf.len() {
        match s.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    if is_html_answer(&buf[..len]) { Answer::Html } else { Answer::Other }
}

/// Reads what the server sent before the probe closes: a Unix socket closed
/// with unread data resets its peer (an SMTP server that greeted would see
/// ECONNRESET instead of a client that left).
fn drain<S: Read>(s: &mut S, timeout: fn(&S, Option<Duration>) -> io::Result<()>) {
    let _ = timeout(s, Some(Duration::from_millis(20)));
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(s.read(&mut buf), Ok(n) if n > 0) {
            return;
        }
    }
}

/// An HTTP response head whose `Content-Type` is `text/html`.
fn is_html_answer(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    if !lines.next().is_some_and(|l| l.starts_with("HTTP/1.")) {
        return false;
    }
    lines.take_while(|l| !l.is_empty()).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("content-type") && v.trim().to_ascii_lowercase().starts_with("text/html")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_answers() {
        assert!(is_html_answer(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"));
        assert!(is_html_answer(b"HTTP/1.0 404 Not Found\r\ncontent-type:TEXT/HTML\r\n\r\n"));
        assert!(!is_html_answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"));
        assert!(!is_html_answer(b"-ERR wrong number of arguments for 'get' command\r\n"));
        assert!(!is_html_answer(b"HTTP/1.1 200 OK\r\n\r\nContent-Type: text/html\r\n"));
    }

    #[test]
    fn a_bad_port_is_one_line() {
        let e = chosen_port(Some("abc")).unwrap_err().to_string();
        assert!(e.contains("\"abc\" is not a port") && !e.contains('\n'), "{e}");
        assert!(chosen_port(Some("0")).is_err());
        assert!(chosen_port(Some("70000")).is_err());
        assert_eq!(chosen_port(Some("3001")).unwrap(), Some(3001));
    }
}
