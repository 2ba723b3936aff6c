//! Seccomp interception (Linux): listeners of programs the shim cannot enter
//! (statically linked, Go — their sockets bypass libc) are converted by the
//! wrapper instead of the shim, so two copies of such a server run side by
//! side. The wrapped command gets a filter (`sys_seccomp`) that sends its
//! tree's `bind()`, `listen()` and `connect()` to a thread of the wrapper:
//! - a TCP bind of a port ≠ 0 on loopback or the wildcard, from a process
//!   that does not carry the shim, is done by the wrapper on the process's
//!   own socket (a copy from `pidfd_getfd`, same open file) to an ephemeral
//!   loopback port (127.0.0.1, v4-mapped for an IPv6 socket), under the instance's name for the
//!   requested port (the claim and the names of `agentfs_registry::claim`);
//!   the call returns 0. A port the instance holds already is EADDRINUSE,
//!   as the shim says (a replica with `--replica`).
//! - its `listen()` is done by the wrapper too, then the sidecar routing the
//!   requested port to the ephemeral one over TCP is written (as the PORT
//!   fallback's), and the claim removed; files are removed once the process
//!   or its listener is gone.
//! - a TCP connect to loopback:P where the tree converted a listener on P
//!   is made by the wrapper on the caller's socket to that listener's
//!   ephemeral port, so the instance's clients reach their own server.
//! - anything else — AF_UNIX binds (the shim's), UDP, port 0, processes with
//!   the shim, connects while nothing is converted — continues at once.
//!
//! The socket stays TCP (not a Unix socket, as the shim makes): Go's
//! net/http reads the peer address of each accepted connection from
//! accept4() and dereferences it, so a Unix socket would crash it, and
//! faking addresses would mean intercepting every accept of the tree. What
//! the app can see: getsockname() gives the ephemeral port.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentfs_registry::env::{self, PortSet};
use agentfs_registry::{Home, SocketName, claim, liveness, procnet, scan};

use crate::seccomp_proc::{
    cmdline, convertible, nonblocking, read_sockaddr, socket_inode, tcp_socket, tgid, their_socket, unbound_tcp,
    unix_accepts,
};
use crate::sys_seccomp::{self as sys, Answer, Notif};
use crate::unseen::Converted;
use crate::watch::{TcpRoute, write_tcp_route_at};
use crate::wrap::Instance;

/// Whether interception is used, or why not.
pub fn availability() -> Result<(), String> {
    if std::env::var(env::SECCOMP).is_ok_and(|v| v.trim() == "0") {
        return Err(format!("turned off ({}=0)", env::SECCOMP));
    }
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err("not built for this architecture".to_owned());
    }
    sys::probe()
}

/// A socket of the tree converted here.
struct Entry {
    pid: u32,
    stem: String,
    requested: SocketAddr,
    local: SocketAddr,
    listening: bool,
}

struct Supervisor {
    home: Home,
    me: Instance,
    replica: bool,
    ports: Option<PortSet>,
    skip: PortSet,
    quiet: Option<u32>,
    entries: HashMap<u64, Entry>,
    converted: Converted,
    next_replica: u32,
}

/// Runs the supervisor on `listener` in a thread until the tree is gone.
/// `quiet` is the command's pid when the wrap line named it already (its
/// listeners get no line of their own).
pub fn supervise(listener: OwnedFd, home: Home, me: Instance, replica: bool, quiet: Option<u32>) -> Converted {
    let ports = std::env::var(env::PORTS).ok().filter(|p| !p.trim().is_empty()).and_then(|p| PortSet::parse(&p).ok());
    let skip = PortSet::parse(&std::env::var(env::SKIP_PORTS).unwrap_or_default()).unwrap_or_default();
    let converted = Converted::default();
    let mut s = Supervisor {
        home,
        me,
        replica,
        ports,
        skip,
        quiet,
        entries: HashMap::new(),
        converted: converted.clone(),
        next_replica: 1,
    };
    std::thread::spawn(move || s.run(&Arc::new(listener)));
    converted
}

const SWEEP_EVERY: Duration = Duration::from_millis(250);

impl Supervisor {
    fn run(&mut self, listener: &Arc<OwnedFd>) {
        let mut swept = Instant::now();
        loop {
            let mut fds = [rustix::event::PollFd::new(listener, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: 250_000_000 };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            let ready = fds[0].revents();
            if ready.contains(rustix::event::PollFlags::IN) {
                if let Ok(n) = sys::recv(listener) {
                    if let Some(answer) = self.handle(listener, &n) {
                        let _ = sys::respond(listener, n.id, answer);
                    }
                }
            } else if ready.intersects(rustix::event::PollFlags::HUP | rustix::event::PollFlags::ERR) {
                break; // no process of the tree is left
            }
            if swept.elapsed() >= SWEEP_EVERY {
                self.sweep();
                swept = Instant::now();
            }
        }
        self.sweep();
    }

    /// The answer to notification `n`; `None` when a thread will give it.
    fn handle(&mut self, listener: &Arc<OwnedFd>, n: &Notif) -> Option<Answer> {
        let is_connect = n.nr == libc::SYS_connect;
        // Nothing converted yet: no connect can be one to redirect.
        if is_connect && !self.entries.values().any(|e| e.listening) {
            return Some(Answer::Continue);
        }
        let Some(pid) = tgid(n.pid) else { return Some(Answer::Continue) };
        // int and socklen_t arguments: the kernel reads their low 32 bits only.
        let int = |i: usize| n.args[i] as u32 as i32;
        let fd = int(0);
        if n.nr == libc::SYS_listen {
            return Some(self.listen(pid, fd, int(1)));
        }
        let Some(addr) = read_sockaddr(n.pid, n.args[1], n.args[2] as u32) else { return Some(Answer::Continue) };
        if !sys::id_valid(listener, n.id) {
            return Some(Answer::Continue);
        }
        match n.nr {
            nr if nr == libc::SYS_bind => Some(self.bind(pid, fd, addr)),
            _ if is_connect => self.connect(listener, n.id, (pid, fd), addr),
            _ => Some(Answer::Continue),
        }
    }

    /// A connect to loopback:P where this tree converted a listener on P
    /// goes to it (its ephemeral port), done by the wrapper on the caller's
    /// socket — in a thread of its own for a blocking socket.
    fn connect(&self, listener: &Arc<OwnedFd>, id: u64, (pid, fd): (u32, i32), addr: SocketAddr) -> Option<Answer> {
        let Some(dest) = agentfs_registry::reach::local_destination(addr).filter(|d| d.port() != 0) else {
            return Some(Answer::Continue);
        };
        let reached = self.entries.values().filter(|e| e.listening && e.requested.port() == dest.port());
        let best = reached
            .filter_map(|e| Some((agentfs_registry::reach::reach(e.requested.ip(), dest)?, e)))
            .max_by_key(|(score, _)| *score);
        let Some((_, entry)) = best else { return Some(Answer::Continue) };
        let Some(sock) = their_socket(pid, fd).filter(|s| tcp_socket(s, addr.is_ipv6())) else {
            return Some(Answer::Continue);
        };
        let target = match (addr.is_ipv6(), entry.local.ip()) {
            (true, std::net::IpAddr::V4(v4)) => SocketAddr::new(v4.to_ipv6_mapped().into(), entry.local.port()),
            (false, std::net::IpAddr::V6(_)) => return Some(Answer::Continue),
            _ => entry.local,
        };
        let blocking = !nonblocking(&sock);
        let connect = move || match rustix::net::connect(&sock, &target) {
            Ok(()) => Answer::Return(0),
            Err(e) => Answer::Errno(e.raw_os_error()),
        };
        if !blocking {
            return Some(connect());
        }
        let listener = listener.clone();
        std::thread::spawn(move || sys::respond(&listener, id, connect()));
        None
    }

    fn bind(&mut self, pid: u32, fd: i32, addr: SocketAddr) -> Answer {
        let allowed = self.ports.as_ref().is_none_or(|p| p.contains(addr.port())) && !self.skip.contains(addr.port());
        if addr.port() == 0 || !convertible(addr.ip()) || !allowed || crate::unseen::carries_shim(pid) {
            return Answer::Continue;
        }
        let Some(sock) = their_socket(pid, fd).filter(|s| unbound_tcp(s, addr.is_ipv6())) else {
            return Answer::Continue;
        };
        let stem = match self.choose(pid, addr.port()) {
            Ok(stem) => stem,
            Err(answer) => return answer,
        };
        let claim_file = scan::claim_path(&self.home.run_dir(), &stem);
        let Ok(Some(held)) = claim::Claim::take(&claim_file, pid, addr) else { return Answer::Errno(libc::EADDRINUSE) };
        // An IPv6 socket takes 127.0.0.1 v4-mapped (so IPv4 and IPv6 clients
        // both reach it), else [::1] (a v6-only socket).
        let v4: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
        let mapped: SocketAddr = (Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 0).into();
        let tries: &[SocketAddr] = if addr.is_ipv6() { &[mapped, (Ipv6Addr::LOCALHOST, 0).into()] } else { &[v4] };
        if !tries.iter().any(|t| rustix::net::bind(&sock, t).is_ok()) {
            return Answer::Continue; // fail open: the original bind happens
        }
        let local = rustix::net::getsockname(&sock).ok().and_then(|a| SocketAddr::try_from(a).ok());
        let local = local.map(|l| SocketAddr::new(l.ip().to_canonical(), l.port()));
        let (Some(local), Ok(st)) = (local, rustix::fs::fstat(&sock)) else { return Answer::Return(0) };
        held.keep();
        self.converted.lock().map(|mut c| c.insert(st.st_ino)).unwrap_or_default();
        self.entries.insert(st.st_ino, Entry { pid, stem, requested: addr, local, listening: false });
        Answer::Return(0)
    }

    /// The name for `port` of process `pid`: the instance's canonical one
    /// if free; a replica's if the process holds that port already (a v4
    /// and a v6 bind) or with `--replica`; else EADDRINUSE.
    fn choose(&mut self, pid: u32, port: u16) -> Result<String, Answer> {
        let canonical = SocketName::new(self.me.app.clone(), self.me.instance.clone(), port);
        let open = procnet::socket_inodes(pid);
        let ours = self.entries.iter().any(|(ino, e)| e.pid == pid && e.requested.port() == port && open.contains(ino));
        let free = !ours
            && match claim::name_is_free(&self.home.run_dir(), &canonical.stem(), pid, unix_accepts) {
                Ok(free) => free,
                Err(_) => return Err(Answer::Continue),
            };
        if free {
            return Ok(canonical.stem());
        }
        if !ours && !self.replica {
            return Err(Answer::Errno(libc::EADDRINUSE));
        }
        self.next_replica += 1;
        Ok(canonical.with_replica(pid, self.next_replica - 1).stem())
    }

    fn listen(&mut self, pid: u32, fd: i32, backlog: i32) -> Answer {
        let Some(ino) = socket_inode(pid, fd) else { return Answer::Continue };
        let Some(entry) = self.entries.get_mut(&ino) else { return Answer::Continue };
        let Some(sock) = their_socket(pid, fd) else { return Answer::Continue };
        if let Err(e) = rustix::net::listen(&sock, backlog) {
            return Answer::Errno(e.raw_os_error());
        }
        if !entry.listening {
            entry.listening = true;
            entry.pid = pid;
            let route = TcpRoute {
                pid,
                bound: entry.requested,
                target: entry.local,
                cmd: cmdline(pid),
                cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default(),
            };
            if self.quiet != Some(pid) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let why = crate::unseen::why_unseen(pid);
                let (asked, port) = (entry.requested, entry.requested.port());
                eprintln!(
                    "agentfs: {} (pid {pid}) listens on TCP {asked}, which the shim cannot enter ({why}); converted \
                     by seccomp interception, routed as its port {port}",
                    comm.trim()
                );
            }
            let run = self.home.run_dir();
            if let Err(e) = write_tcp_route_at(&self.home, &self.me, &entry.stem, route) {
                eprintln!("agentfs: cannot route pid {pid}'s port {}: {e}", entry.requested.port());
            }
            let _ = std::fs::remove_file(scan::claim_path(&run, &entry.stem));
        }
        Answer::Return(0)
    }

    /// Forgets sockets whose process is gone or closed them, with their files.
    fn sweep(&mut self) {
        let run = self.home.run_dir();
        self.entries.retain(|ino, e| {
            if liveness::pid_alive(e.pid) && procnet::socket_inodes(e.pid).contains(ino) {
                return true;
            }
            let sidecar = scan::sidecar_path(&run, &e.stem);
            let named = agentfs_registry::record::read::<agentfs_registry::Sidecar>(&sidecar)
                .is_ok_and(|sc| sc.pid == e.pid && sc.tcp == Some(e.local));
            if named {
                let _ = std::fs::remove_file(sidecar);
            }
            let claim_file = scan::claim_path(&run, &e.stem);
            if scan::read_claim(&claim_file).is_some_and(|(p, _)| p == e.pid) {
                let _ = std::fs::remove_file(claim_file);
            }
            false
        });
    }
}
