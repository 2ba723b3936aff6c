//! Seccomp interception (Linux): listeners of programs the shim cannot enter
//! (statically linked, Go — their sockets bypass libc) are converted by the
//! wrapper instead of the shim, so two copies of such a server run side by
//! side. The wrapped command gets a filter (`sys_seccomp`) that sends its
//! tree's `bind()` and `listen()` to a thread of the wrapper:
//! - a TCP bind of a port ≠ 0 on loopback or the wildcard, from a process
//!   that does not carry the shim, is done by the wrapper on the process's
//!   own socket (a copy from `pidfd_getfd`, same open file) to an ephemeral
//!   loopback port of the same family, under the instance's name for the
//!   requested port (the claim and the names of `agentfs_registry::claim`);
//!   the call returns 0. A port the instance holds already is EADDRINUSE,
//!   as the shim says (a replica with `--replica`).
//! - its `listen()` is done by the wrapper too, then the sidecar routing the
//!   requested port to the ephemeral one over TCP is written (as the PORT
//!   fallback's), and the claim removed; files are removed once the process
//!   or its listener is gone.
//! - anything else — AF_UNIX binds (the shim's), UDP, port 0, processes with
//!   the shim — continues untouched at once.
//!
//! The socket stays TCP (not a Unix socket, as the shim makes): Go's
//! net/http reads the peer address of each accepted connection from
//! accept4() and dereferences it, so a Unix socket would crash it, and
//! faking addresses would mean intercepting every accept of the tree. What
//! the app can see: getsockname() gives the ephemeral port.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agentfs_registry::env::{self, PortSet};
use agentfs_registry::{Home, SocketName, claim, liveness, procnet, scan};

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
    std::thread::spawn(move || s.run(&listener));
    converted
}

const SWEEP_EVERY: Duration = Duration::from_millis(250);

impl Supervisor {
    fn run(&mut self, listener: &OwnedFd) {
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
                    let answer = self.handle(listener, &n);
                    let _ = sys::respond(listener, n.id, answer);
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

    fn handle(&mut self, listener: &OwnedFd, n: &Notif) -> Answer {
        let Some(pid) = tgid(n.pid) else { return Answer::Continue };
        // int and socklen_t arguments: the kernel reads their low 32 bits only.
        let int = |i: usize| n.args[i] as u32 as i32;
        let fd = int(0);
        match n.nr {
            nr if nr == libc::SYS_bind => {
                let Some(addr) = read_sockaddr(n.pid, n.args[1], n.args[2] as u32) else { return Answer::Continue };
                if !sys::id_valid(listener, n.id) {
                    return Answer::Continue;
                }
                self.bind(pid, fd, addr)
            }
            nr if nr == libc::SYS_listen => self.listen(pid, fd, int(1)),
            _ => Answer::Continue,
        }
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
        let ephemeral: SocketAddr =
            if addr.is_ipv6() { (Ipv6Addr::LOCALHOST, 0).into() } else { (Ipv4Addr::LOCALHOST, 0).into() };
        if rustix::net::bind(&sock, &ephemeral).is_err() {
            return Answer::Continue; // fail open: the original bind happens
        }
        let local = rustix::net::getsockname(&sock).ok().and_then(|a| SocketAddr::try_from(a).ok());
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

/// Loopback or the wildcard, in any spelling (as the shim converts).
fn convertible(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

fn unix_accepts(path: &Path) -> bool {
    agentfs_registry::sunpath::SockPath::new(path)
        .is_ok_and(|p| std::os::unix::net::UnixStream::connect(p.as_path()).is_ok())
}

/// The process (thread group) of thread `tid`.
fn tgid(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:"))?.trim().parse().ok()
}

/// The sockaddr at `ptr` (`len` bytes) in the memory of thread `tid`.
fn read_sockaddr(tid: u32, ptr: u64, len: u32) -> Option<SocketAddr> {
    let mut buf = [0u8; 28];
    let len = usize::try_from(len).ok()?.min(buf.len());
    let mem = std::fs::File::open(format!("/proc/{tid}/mem")).ok()?;
    mem.read_exact_at(&mut buf[..len], ptr).ok()?;
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    match i32::from(u16::from_ne_bytes([buf[0], buf[1]])) {
        libc::AF_INET if len >= 16 => Some((Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]), port).into()),
        libc::AF_INET6 if len >= 24 => {
            let ip: [u8; 16] = buf[8..24].try_into().ok()?;
            Some((Ipv6Addr::from(ip), port).into())
        }
        _ => None,
    }
}

/// A copy of descriptor `fd` of process `pid` (the same open socket).
fn their_socket(pid: u32, fd: i32) -> Option<OwnedFd> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).ok()
}

/// A TCP socket of the requested family, not bound yet.
fn unbound_tcp(sock: &impl AsFd, v6: bool) -> bool {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if v6 { AddressFamily::INET6 } else { AddressFamily::INET };
    let tcp = sockopt::socket_protocol(sock).is_ok_and(|p| p.is_none_or(|p| p == rustix::net::ipproto::TCP));
    let unbound =
        rustix::net::getsockname(sock).ok().and_then(|a| SocketAddr::try_from(a).ok()).is_some_and(|a| a.port() == 0);
    sockopt::socket_type(sock) == Ok(SocketType::STREAM) && sockopt::socket_domain(sock) == Ok(family) && tcp && unbound
}

/// The inode of socket descriptor `fd` of `pid` (`socket:[N]`).
fn socket_inode(pid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_loopback_and_wildcard_only() {
        for ip in ["127.0.0.1", "127.1.2.3", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1", "::ffff:0.0.0.0"] {
            assert!(convertible(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.168.1.2", "10.0.0.1", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(!convertible(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn reads_a_sockaddr_from_a_process_memory() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8000u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&3000u16.to_be_bytes());
        v6[23] = 1;
        let me = std::process::id();
        let at = |b: &[u8]| b.as_ptr() as u64;
        assert_eq!(read_sockaddr(me, at(&v4), 16), Some("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(read_sockaddr(me, at(&v6), 28), Some("[::1]:3000".parse().unwrap()));
        assert_eq!(read_sockaddr(me, at(&v4), 8), None, "too short for its family");
        assert_eq!(tgid(me), Some(me));
    }
}
