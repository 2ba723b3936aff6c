//! The dashboard's content, one card per instance, starting or crashed
//! wrapper and static route, rendered on the server: the page is this HTML
//! when it loads (so it works without JavaScript), and the event stream
//! sends the same cards, each with a version, for the page to swap in only
//! the cards that changed (a selection or focus elsewhere stays put).
//! What a card says is checked, not guessed: a static route is probed,
//! a branch is read from the instance's git checkout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::api::{InstanceView, OriginalPortView, RoutesView, StartingView, StaticView};
use crate::page::escape;

/// One card: a stable key, a version of its HTML, the HTML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Card {
    pub key: String,
    pub v: String,
    pub html: String,
}

/// What the page shows: the cards and a one-line summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Content {
    pub summary: String,
    pub cards: Vec<Card>,
}

/// What the cards may hold for this viewer.
pub struct Opts {
    /// Stop buttons (see `stopper`).
    pub can_stop: bool,
    /// The home whose `logs/` to show the last lines of (the router's own user only).
    pub logs_of: Option<agentfs_registry::Home>,
}

/// Lines of an instance's log a card shows.
const LOG_LINES: usize = 5;

/// Builds the content (blocking: it probes static routes and reads git and log files).
pub fn content(view: &RoutesView, now_ms: u64, opts: &Opts) -> Content {
    let can_stop = opts.can_stop;
    let mut cards = Vec::new();
    for a in &view.apps {
        for i in &a.instances {
            let original =
                view.original_ports.iter().filter(|o| o.mirrored && o.answers == format!("{}.{}", i.instance, a.app));
            let originals: Vec<u16> = original.map(|o| o.port).collect();
            let log = log_tail(opts, &a.app, &i.instance);
            cards.push(instance_card(&a.app, (a.url.as_str(), i), &originals, (now_ms, can_stop), &log));
        }
    }
    cards.extend(
        view.starting.iter().map(|w| waiting_card(w, (now_ms, can_stop), &log_tail(opts, &w.app, &w.instance))),
    );
    cards.extend(view.static_routes.iter().map(static_card));
    if !view.original_ports.is_empty() {
        cards.push(originals_card(&view.original_ports));
    }
    let n = view.apps.iter().map(|a| a.instances.len()).sum::<usize>();
    let summary = match (n, view.starting.len(), view.static_routes.len()) {
        (0, 0, 0) => "Nothing is running.".to_owned(),
        (n, s, r) => format!("{n} running · {s} starting or crashed · {r} static"),
    };
    if cards.is_empty() {
        let html = "<p class=card data-key>No apps are running. Start one in its directory with \
                    <code>agentfs wrap -- npm run dev</code>; it appears here at once.</p>";
        cards.push(card("empty".into(), html.into()));
    }
    Content { summary, cards }
}

fn card(key: String, html: String) -> Card {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    html.hash(&mut h);
    let v = format!("{:x}", h.finish());
    let html = html.replacen(" data-key>", &format!(" data-key=\"{}\" data-v=\"{v}\">", escape(&key)), 1);
    Card { key, v, html }
}

fn link(url: &str) -> String {
    let u = escape(url);
    format!(
        "<a href=\"{u}\">{u}</a><button class=copy type=button data-copy=\"{u}\" aria-label=\"Copy {u}\">copy</button>"
    )
}

/// The stop button (shown with JavaScript only), where the router can tell who asks.
fn stop_button(can_stop: bool, app: &str, instance: &str) -> String {
    if !can_stop {
        return String::new();
    }
    let name = escape(&format!("{instance}.{app}"));
    format!(" <button class=\"stop js-only\" type=button data-stop=\"{name}\" aria-label=\"Stop {name}\">stop</button>")
}

/// The last lines of `logs/<app>.<instance>.log` (a background instance's output), as a card's last row.
fn log_tail(opts: &Opts, app: &str, instance: &str) -> String {
    let Some(home) = &opts.logs_of else { return String::new() };
    let (Ok(app), Ok(instance)) =
        (agentfs_registry::Label::parse(app), agentfs_registry::Label::parse_instance(instance))
    else {
        return String::new();
    };
    let Ok(mut f) = std::fs::File::open(home.app_log(&app, &instance)) else { return String::new() };
    use std::io::{Seek, SeekFrom};
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = f.take(8192).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last: Vec<String> = lines[lines.len().saturating_sub(LOG_LINES)..]
        .iter()
        .map(|l| escape(&l.chars().take(300).collect::<String>()))
        .collect();
    if last.is_empty() {
        return String::new();
    }
    format!("<pre class=log aria-label=\"last log lines\">{}</pre>", last.join("\n"))
}

fn instance_card(
    app: &str,
    (app_url, i): (&str, &InstanceView),
    originals: &[u16],
    (now_ms, can_stop): (u64, bool),
    log: &str,
) -> Card {
    let key = format!("i/{app}/{}", i.instance);
    let default = if i.default { " <span class=muted>default</span>" } else { "" };
    let mut urls = link(&i.url);
    if i.default {
        urls.push_str(&format!("<br>{}", link(app_url)));
    }
    let ports: Vec<String> = i.ports.iter().map(|p| link(&p.url)).collect();
    let mut pids: Vec<u32> = i.ports.iter().flat_map(|p| p.pids.iter().copied()).collect();
    pids.sort_unstable();
    pids.dedup();
    let replicas = i.ports.iter().map(|p| p.targets.len()).max().unwrap_or(1);
    let mut rows = vec![("URL", urls), ("Ports", ports.join("<br>"))];
    if !originals.is_empty() {
        let o: Vec<String> = originals.iter().map(|p| format!("<code>localhost:{p}</code>")).collect();
        rows.push(("Also on", o.join(" ")));
    }
    rows.push(("Pid", pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")));
    if replicas > 1 {
        rows.push(("Replicas", replicas.to_string()));
    }
    if i.started_at_ms > 0 {
        rows.push(("Up", uptime(now_ms.saturating_sub(i.started_at_ms))));
    }
    where_rows(&mut rows, i.cwd.as_deref());
    let html = format!(
        "<section class=card aria-label=\"{app} {inst}\" data-key><h3><span>{app}</span> <span>{inst}</span>{default} \
         <span class=\"badge live\">live</span>{stop}</h3>{}{log}</section>",
        dl(&rows),
        app = escape(app),
        inst = escape(&i.instance),
        stop = stop_button(can_stop, app, &i.instance),
    );
    card(key, html)
}

fn waiting_card(w: &StartingView, (now_ms, can_stop): (u64, bool), log: &str) -> Card {
    let key = format!("w/{}/{}/{}", w.app, w.instance, w.wrapper_pid);
    let (class, state) = match &w.crashed {
        Some(_) => ("crashed", "crashed"),
        None => ("starting", "starting"),
    };
    let mut rows = Vec::new();
    if let Some(how) = &w.crashed {
        rows.push(("Exit", escape(how)));
        rows.push((
            "Next",
            "its terminal (or <code>agentfs logs</code>) says why; it is served again once it listens".into(),
        ));
    }
    rows.push(("Wrapper", format!("pid {}", w.wrapper_pid)));
    rows.push(("Since", uptime(now_ms.saturating_sub(w.started_at_ms))));
    where_rows(&mut rows, w.cwd.as_deref());
    let html = format!(
        "<section class=card aria-label=\"{app} {inst}\" data-key><h3><span>{app}</span> <span>{inst}</span> \
         <span class=\"badge {class}\">{state}</span>{stop}</h3>{}{log}</section>",
        dl(&rows),
        app = escape(&w.app),
        inst = escape(&w.instance),
        stop = stop_button(can_stop, &w.app, &w.instance),
    );
    card(key, html)
}

fn static_card(s: &StaticView) -> Card {
    let (class, state, why) = match probe(&s.target) {
        Ok(()) => ("up", "up", String::new()),
        Err(e) => ("down", "down", format!(" <span class=muted>({})</span>", escape(&e))),
    };
    let rows = vec![("URL", link(&s.url)), ("Target", format!("<code>{}</code>{why}", escape(&s.target)))];
    let html = format!(
        "<section class=card aria-label=\"static {host}\" data-key><h3><span>{host}</span> <span class=muted>static</span> \
         <span class=\"badge {class}\">{state}</span></h3>{}</section>",
        dl(&rows),
        host = escape(&s.host),
    );
    card(format!("s/{}", s.host), html)
}

/// `localhost:5173 → main.shop` per original port, or why it is not mirrored.
fn originals_card(ports: &[OriginalPortView]) -> Card {
    let items: String = ports
        .iter()
        .map(|o| match &o.reason {
            None => format!("<li><code>localhost:{}</code> → {}</li>", o.port, escape(&o.answers)),
            Some(why) => format!("<li><code>localhost:{}</code> not mirrored ({})</li>", o.port, escape(why)),
        })
        .collect();
    let html = format!(
        "<section class=card aria-label=\"original ports\" data-key><h3>Original ports</h3>\
         <p class=muted>Ports the apps asked for, answered on loopback by the instance that took each first.</p><ul>{items}</ul></section>"
    );
    card("o".into(), html)
}

fn dl(rows: &[(&str, String)]) -> String {
    let items: String = rows.iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    format!("<dl>{items}</dl>")
}

/// Directory and git branch rows.
fn where_rows(rows: &mut Vec<(&str, String)>, cwd: Option<&Path>) {
    let Some(cwd) = cwd else { return };
    rows.push(("Directory", format!("<code>{}</code>", escape(&cwd.display().to_string()))));
    if let Some(b) = branch(cwd) {
        rows.push(("Branch", format!("<code>{}</code>", escape(&b))));
    }
}

/// `5 s`, `12 min`, `3 h 4 min`, `2 d 1 h`: coarse, so a card rarely changes for its clock alone.
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => "under a minute".to_owned(),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// Whether a static route's target accepts a connection now; if not, why, in words.
fn probe(target: &str) -> Result<(), String> {
    let wait = Duration::from_millis(300);
    if target.starts_with('/') {
        return std::os::unix::net::UnixStream::connect(target).map(drop).map_err(|e| why_down(&e));
    }
    use std::net::ToSocketAddrs;
    let addrs = target.to_socket_addrs().map_err(|e| format!("cannot resolve it: {e}"))?;
    let mut last = "no address".to_owned();
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, wait) {
            Ok(_) => return Ok(()),
            Err(e) => last = why_down(&e),
        }
    }
    Err(last)
}

fn why_down(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "no socket there".into(),
        K::ConnectionRefused => "nothing listens there".into(),
        K::TimedOut | K::WouldBlock => "no answer within 300 ms".into(),
        K::PermissionDenied => "not allowed to connect".into(),
        _ => e.to_string(),
    }
}

/// The branch checked out where `dir` is (or a short commit when detached).
pub fn branch(dir: &Path) -> Option<String> {
    let git = dir.ancestors().map(|d| d.join(".git")).find(|g| g.exists())?;
    let gitdir = if git.is_dir() {
        git
    } else {
        let text = read_small(&git)?;
        let to = PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim());
        if to.is_absolute() { to } else { git.parent()?.join(to) }
    };
    let head = read_small(&gitdir.join("HEAD"))?;
    let head = head.trim();
    match head.strip_prefix("ref: ") {
        Some(r) => Some(r.strip_prefix("refs/heads/").unwrap_or(r).to_owned()),
        None => Some(head.get(..7)?.to_owned()),
    }
}

fn read_small(path: &Path) -> Option<String> {
    agentfs_registry::safefile::read_small(path, 4096).ok().and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_carry_their_key_and_version() {
        let c = card("i/shop/main".into(), "<section class=card data-key><h3>x</h3></section>".into());
        assert!(c.html.starts_with("<section class=card data-key=\"i/shop/main\" data-v=\""), "{}", c.html);
        assert_ne!(c.v, card("i/shop/main".into(), "<section class=card data-key>y</section>".into()).v);
    }

    #[test]
    fn a_static_route_to_a_missing_socket_is_down() {
        let s = StaticView {
            host: "api.localhost".into(),
            url: "http://api.localhost".into(),
            target: "/nonexistent/x.sock".into(),
        };
        let c = static_card(&s);
        assert!(c.html.contains("badge down") && c.html.contains("(no socket there)"), "{}", c.html);
    }

    #[test]
    fn the_branch_is_read_from_a_checkout_or_a_worktree() {
        let dir = agentfs_registry::testutil::TempDir::new("branch");
        let main = dir.path().join("main");
        std::fs::create_dir_all(main.join(".git")).unwrap();
        std::fs::write(main.join(".git/HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        std::fs::create_dir_all(main.join("web/src")).unwrap();
        assert_eq!(branch(&main.join("web/src")).as_deref(), Some("feature/x"));
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(main.join(".git/worktrees/wt")).unwrap();
        std::fs::write(main.join(".git/worktrees/wt/HEAD"), "0123456789abcdef\n").unwrap();
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", main.join(".git/worktrees/wt").display())).unwrap();
        assert_eq!(branch(&wt).as_deref(), Some("0123456"));
        assert_eq!(uptime(59_000), "under a minute");
        assert_eq!(uptime(3_660_000), "1 h 1 min");
    }
}
