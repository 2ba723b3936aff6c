//! Listeners the shim cannot see. A process of the wrapped tree that does
//! not carry the shim — a statically linked child (esbuild's Go binary
//! started by `npm run serve`, a Go server on Linux), one that switched
//! users — listens on real TCP, where a second copy collides and the router
//! never finds it. The wrapper looks at its own tree (Linux: the LISTEN
//! sockets of `/proc/net/tcp{,6}` on loopback or the wildcard whose inode is
//! one of the tree's descriptors), routes each one over TCP as the PORT
//! fallback does (a sidecar with a `tcp` target), and says so once.
//! A process of the tree that runs as another user is named once too.
//! Listeners of processes that carry the shim were left on TCP on purpose
//! (port 0, `AGENTFS_SKIP_PORTS`): those are not touched.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use agentfs_registry::binary::{self, Binary};
use agentfs_registry::{Home, SocketName, procnet, proctree, scan};

use crate::watch::{TcpRoute, write_tcp_route};
use crate::wrap::Instance;

/// The inodes of the sockets the seccomp supervisor converted (routed
/// already), which the scan leaves alone.
pub type Converted = std::sync::Arc<std::sync::Mutex<BTreeSet<u64>>>;

/// How often the tree is looked at.
const EVERY: Duration = Duration::from_millis(250);

/// Watches the tree of this wrapper for TCP listeners the shim cannot see.
/// Sockets in `converted` (by the seccomp supervisor) are routed already.
pub fn watch(home: Home, me: Instance, cwd: PathBuf, converted: Option<Converted>) {
    if !cfg!(target_os = "linux") {
        return;
    }
    thread::spawn(move || {
        let mut done: BTreeSet<u64> = BTreeSet::new();
        let mut told: BTreeSet<u32> = BTreeSet::new();
        loop {
            thread::sleep(EVERY);
            other_users(&home, &me, &mut told);
            if let Some(c) = converted.as_ref().and_then(|c| c.lock().ok()) {
                done.extend(c.iter());
            }
            for found in unseen_listeners(&home, &me, &done) {
                done.insert(found.inode);
                route(&home, &me, &found, &cwd);
            }
        }
    });
}

/// The processes of the wrapper's tree (not the router it started).
fn tree(home: &Home, me: &Instance) -> BTreeSet<u32> {
    let Some(all) = proctree::list() else { return BTreeSet::new() };
    let router = agentfs_router::pidfile::running(home);
    proctree::descendants(&all, me.wrapper_pid, &router.into_iter().collect::<Vec<_>>())
}

/// Says once for each process of the tree that runs as another user: the
/// shim in the private home is not readable to it.
fn other_users(home: &Home, me: &Instance, told: &mut BTreeSet<u32>) {
    let mine = rustix::process::geteuid().as_raw();
    for pid in tree(home, me) {
        if told.contains(&pid) {
            continue;
        }
        if let Some(uid) = euid(pid).filter(|u| *u != mine) {
            told.insert(pid);
            eprintln!("agentfs: pid {pid} runs as {} and cannot load the shim", user_name(uid));
        }
    }
}

/// The effective uid of `pid` (`Uid:` of /proc/<pid>/status).
fn euid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The name of `uid` from /etc/passwd, else the number.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let named = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_owned())
    });
    named.unwrap_or_else(|| format!("uid {uid}"))
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
    let mut found = Vec::new();
    for pid in tree(home, me).into_iter().filter(|p| !carries_shim(*p)) {
        let inodes = procnet::socket_inodes(pid);
        for l in listens.iter().filter(|l| inodes.contains(&l.inode)) {
            found.push(Unseen { pid, local: l.local, inode: l.inode });
        }
    }
    found
}

/// Whether the shim is loaded in `pid` and sees its sockets (it is then the
/// shim's choice that this listener stayed on TCP). A cgo Go program loads
/// the shim but makes its socket calls as raw syscalls.
pub fn carries_shim(pid: u32) -> bool {
    let exe = Path::new("/proc").join(pid.to_string()).join("exe");
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("libagentfs_shim"))
        && !matches!(binary::classify_path(&exe), Binary::ElfGo { .. })
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
pub fn why_unseen(pid: u32) -> &'static str {
    match binary::classify_path(&Path::new("/proc").join(pid.to_string()).join("exe")) {
        Binary::ElfStatic => "statically linked",
        Binary::ElfGo { .. } => "a Go program: its sockets bypass libc",
        _ => "it does not carry LD_PRELOAD: another user, or a cleared environment",
    }
}
