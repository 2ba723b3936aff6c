//! Listeners the shim cannot see. A process of the wrapped tree that does
//! not carry the shim — a statically linked child (esbuild's Go binary
//! started by `npm run serve`, a Go server on Linux), one that switched
//! users — listens on real TCP, where a second copy collides and the router
//! never finds it. The wrapper looks at its own tree (Linux: the LISTEN
//! sockets of `/proc/net/tcp{,6}` on loopback or the wildcard whose inode is
//! one of the tree's descriptors), routes each one over TCP as the PORT
//! fallback does (a sidecar with a `tcp` target), and says so once.
//! Listeners of processes that carry the shim were left on TCP on purpose
//! (port 0, `AGENTFS_SKIP_PORTS`): those are not touched.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use agentfs_registry::binary::{self, Binary};
use agentfs_registry::{Home, SocketName, procnet, proctree, scan};

use crate::watch::{TcpRoute, write_tcp_route};
use crate::wrap::Instance;

/// How often the tree is looked at.
const EVERY: Duration = Duration::from_millis(250);

/// Watches the tree of this wrapper for TCP listeners the shim cannot see.
pub fn watch(home: Home, me: Instance, cwd: PathBuf) {
    if !cfg!(target_os = "linux") {
        return;
    }
    thread::spawn(move || {
        let mut done: BTreeSet<u64> = BTreeSet::new();
        loop {
            thread::sleep(EVERY);
            for found in unseen_listeners(&home, &me, &done) {
                done.insert(found.inode);
                route(&home, &me, &found, &cwd);
            }
        }
    });
}

/// A TCP listener of a process of the tree that does not carry the shim.
struct Unseen {
    pid: u32,
    local: SocketAddr,
    inode: u64,
}

fn unseen_listeners(home: &Home, me: &Instance, done: &BTreeSet<u64>) -> Vec<Unseen> {
    let listens: Vec<_> = procnet::tcp_listeners()
        .into_iter()
        .filter(|l| {
            !done.contains(&l.inode) && procnet::reaches_loopback(l.local.ip()) && l.local.port() != me.router_port
        })
        .collect();
    if listens.is_empty() {
        return Vec::new();
    }
    let Some(all) = proctree::list() else { return Vec::new() };
    let router = agentfs_router::pidfile::running(home);
    let tree = proctree::descendants(&all, me.wrapper_pid, &router.into_iter().collect::<Vec<_>>());
    let mut found = Vec::new();
    for pid in tree.into_iter().filter(|p| !carries_shim(*p)) {
        let inodes = procnet::socket_inodes(pid);
        for l in listens.iter().filter(|l| inodes.contains(&l.inode)) {
            found.push(Unseen { pid, local: l.local, inode: l.inode });
        }
    }
    found
}

/// Whether the shim is loaded in `pid` (it is then the shim's choice that
/// this listener stayed on TCP).
fn carries_shim(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("libagentfs_shim"))
}

/// Registers the listener as a TCP route of the instance and says why.
fn route(home: &Home, me: &Instance, u: &Unseen, cwd: &std::path::Path) {
    let port = u.local.port();
    let stem = SocketName::new(me.app.clone(), me.instance.clone(), port).stem();
    if scan::sidecar_path(&home.run_dir(), &stem).exists() {
        return; // that port of the instance is routed already (the PORT fallback, a converted listener)
    }
    let target =
        SocketAddr::new(if u.local.is_ipv6() { [0, 0, 0, 0, 0, 0, 0, 1].into() } else { [127, 0, 0, 1].into() }, port);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", u.pid)).unwrap_or_default();
    let route = TcpRoute { pid: u.pid, bound: u.local, target, cmd: vec![comm.trim().to_owned()], cwd: cwd.to_owned() };
    if let Err(e) = write_tcp_route(home, me, route) {
        return eprintln!("agentfs: cannot route {} (pid {}) on TCP {}: {e}", comm.trim(), u.pid, u.local);
    }
    eprintln!(
        "agentfs: {} (pid {}) listens on TCP {}, which the shim cannot enter ({}); routed over TCP — a second copy \
         will collide on that port",
        comm.trim(),
        u.pid,
        u.local,
        why_unseen(u.pid)
    );
}

/// Why the shim is not in `pid`.
fn why_unseen(pid: u32) -> &'static str {
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/exe")) {
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, binary::HEAD_LEN as u64), &mut head);
    }
    match binary::classify(&head) {
        Binary::ElfStatic => "statically linked",
        _ => "it does not carry LD_PRELOAD: another user, or a cleared environment",
    }
}
