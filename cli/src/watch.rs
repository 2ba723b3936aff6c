//! Watching a wrapped app come up: the banner once it listens (one line per
//! port), and, for programs the shim cannot enter, the TCP route registered
//! once the app accepts on the PORT it was given.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use agentfs_registry::names::hostname;
use agentfs_registry::record::{self, Family, Sidecar, VERSION};
use std::os::unix::net::UnixStream;

use agentfs_registry::scan::Listener;
use agentfs_registry::sunpath::SockPath;
use agentfs_registry::{Home, SocketName, Target, liveness, scan};

use crate::front;
use crate::live_record::LiveRecord;
use crate::wrap::Instance;
use std::sync::Arc;

const FIRST_POLL: Duration = Duration::from_millis(20);

/// Prints the banner once the app's listeners settle, and again when its
/// ports change; probes each new port for the front end (see `front`).
pub fn announce_when_listening(home: Home, me: Instance, live: Arc<LiveRecord>) {
    thread::spawn(move || {
        let mut seen = BTreeSet::new();
        let chosen = live.port();
        let mut front = front::Front::new(live, chosen);
        loop {
            let new = new_ports(&home, &me, &mut seen);
            front.saw(&home, &me, &new);
            front.announce_if_settled(&me);
            thread::sleep(if seen.is_empty() { FIRST_POLL } else { front::POLL });
        }
    });
}

/// Ports of this wrapper's listeners not seen yet, in start order. A
/// listener counts once it listens: its sidecar is written after listen(),
/// and a bare socket (the app bound `$AGENTFS_SOCKET` itself) must accept.
pub fn new_ports(home: &Home, me: &Instance, seen: &mut BTreeSet<u16>) -> Vec<u16> {
    let Ok(snap) = scan::scan_instance(&home.run_dir(), &me.app, &me.instance) else { return Vec::new() };
    let listening = |l: &&Listener| match &l.sidecar {
        Some(s) => s.wrapper_pid == Some(me.wrapper_pid),
        None => !seen.contains(&l.port()) && !shim_is_announcing(home, &l.stem) && accepts(&l.target),
    };
    let mut ours: Vec<_> = snap.listeners.iter().filter(listening).map(|l| (l.started_at_ms, l.port())).collect();
    ours.sort();
    ours.into_iter().map(|(_, p)| p).filter(|p| seen.insert(*p)).collect()
}

fn banner(home: &Home, me: &Instance, port: u16, first: bool) {
    let also = also_on_original_port(home, me, port);
    if first {
        eprintln!("agentfs: {} ({}) → {}{also}", me.app, me.instance, me.url);
        if let Some(hint) = me.https_hint() {
            eprintln!("{hint}");
        }
    } else {
        let host = format!("{port}.{}", hostname(&me.app, Some(&me.instance)));
        eprintln!("agentfs: {} ({}) port {port} → {}{also}", me.app, me.instance, me.url_of(&host));
    }
}

/// Whether the router's routes list this instance's `port` (it has seen it).
fn routed(view: &agentfs_router::api::RoutesView, me: &Instance, port: u16) -> bool {
    let app = view.apps.iter().filter(|a| a.app == me.app.as_str());
    let inst = app.flat_map(|a| a.instances.iter()).filter(|i| i.instance == me.instance.as_str());
    inst.flat_map(|i| i.ports.iter()).any(|p| p.port == port)
}

/// How long the banner waits for the router to take up a new port.
const ORIGINAL_WAIT: Duration = Duration::from_millis(500);

/// ` · also http://localhost:<port>` when the router answers this
/// instance's port there too (see the router's `original`), or why not.
pub fn also_on_original_port(home: &Home, me: &Instance, port: u16) -> String {
    let me_name = format!("{}.{}", me.instance, me.app);
    let deadline = std::time::Instant::now() + ORIGINAL_WAIT;
    loop {
        let Ok(view) = agentfs_router::client::routes(home) else { return String::new() };
        match view.original_ports.iter().find(|o| o.port == port) {
            Some(o) if o.mirrored && o.answers == me_name => return format!(" · also http://localhost:{port}"),
            Some(o) if o.mirrored => {
                return format!(" · localhost:{port} answers {} (it took the port first)", o.answers);
            }
            Some(o) => {
                let why = o.reason.as_deref().unwrap_or("not mirrored");
                return format!(" · localhost:{port} is not mirrored ({why})");
            }
            // Routed but not mirrored: the router does not mirror ports (turned off).
            None if routed(&view, me, port) || std::time::Instant::now() >= deadline => return String::new(),
            None => thread::sleep(FIRST_POLL),
        }
    }
}

/// A socket the shim bound and has not announced yet: its claim
/// (`.<stem>.claim`, held from before the bind until after the sidecar is
/// written) or, by now, its sidecar is there. Probing it between listen()
/// and the sidecar would hand the app a connection nobody made (a test
/// server expecting one client fails on it).
fn shim_is_announcing(home: &Home, stem: &str) -> bool {
    let run = home.run_dir();
    run.join(format!(".{stem}.claim")).exists() || scan::sidecar_path(&run, stem).exists()
}

fn accepts(target: &Target) -> bool {
    match target {
        Target::Unix(path) => SockPath::new(path).is_ok_and(|p| UnixStream::connect(p.as_path()).is_ok()),
        Target::Tcp { .. } => false,
    }
}

/// A loopback port that was free a moment ago.
pub fn free_loopback_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Waits until the app accepts on 127.0.0.1:`port`, then writes the sidecar
/// that routes the instance there.
pub fn register_tcp_fallback(home: Home, me: Instance, pid: u32, port: u16, cmd: Vec<String>, cwd: PathBuf) {
    thread::spawn(move || {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while liveness::pid_alive(pid) {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let route = TcpRoute { pid, bound: addr, target: addr, cmd, cwd };
                match write_tcp_route(&home, &me, route) {
                    Ok(()) => banner(&home, &me, port, true),
                    Err(e) => eprintln!("agentfs: cannot register the route to 127.0.0.1:{port}: {e}"),
                }
                return;
            }
            thread::sleep(FIRST_POLL);
        }
    });
}

/// A listener of the instance reached over TCP (not through the shim).
pub struct TcpRoute {
    pub pid: u32,
    /// The address it bound (`0.0.0.0:8000`, `127.0.0.1:3000`).
    pub bound: SocketAddr,
    /// Where the router connects (loopback of the same family).
    pub target: SocketAddr,
    pub cmd: Vec<String>,
    pub cwd: PathBuf,
}

/// Writes the sidecar that routes port `route.bound.port()` of the instance
/// to `route.target` over TCP.
pub fn write_tcp_route(home: &Home, me: &Instance, route: TcpRoute) -> std::io::Result<()> {
    let stem = SocketName::new(me.app.clone(), me.instance.clone(), route.bound.port()).stem();
    write_tcp_route_at(home, me, &stem, route)
}

/// The same, under the name `stem` (a replica's).
pub fn write_tcp_route_at(home: &Home, me: &Instance, stem: &str, route: TcpRoute) -> std::io::Result<()> {
    let port = route.bound.port();
    let sidecar = Sidecar {
        v: VERSION,
        app: me.app.clone(),
        instance: me.instance.clone(),
        port,
        socket: None,
        tcp: Some(route.target),
        pid: route.pid,
        wrapper_pid: Some(me.wrapper_pid),
        family: if route.bound.is_ipv6() { Family::Ipv6 } else { Family::Ipv4 },
        addr: route.bound.ip(),
        cmd: route.cmd,
        cwd: route.cwd,
        started_at_ms: liveness::now_ms(),
    };
    record::write(&scan::sidecar_path(&home.run_dir(), stem), &sidecar)
}
