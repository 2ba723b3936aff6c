//! What Linux's `/proc/net` tables say about listening sockets, read without
//! touching the sockets themselves (a test connection would be seen by the
//! app as a client that left at once): whether a Unix socket path still has
//! a listener behind it (a socket file outlives its killed process), and
//! which uid owns the TCP listener on an address (a TCP route must reach a
//! process of ours). Elsewhere (macOS) every answer is `None`: unknown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s flags: the socket listens.
const ACCEPTCON: u32 = 0x0001_0000;
/// `TCP_LISTEN` in `/proc/net/tcp`'s `st` column.
const TCP_LISTEN: u8 = 0x0A;
/// The tables are read up to this size (tens of thousands of sockets).
const MAX_TABLE: u64 = 64 * 1024 * 1024;

/// What the socket table says of the Unix socket bound at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnixState {
    Listening,
    /// Bound there, not listening (yet).
    Bound,
    /// No socket is bound under that name: its process closed it (was
    /// killed), or the file was renamed after the bind (the table keeps the
    /// name it was bound with).
    Absent,
}

/// Linux's table of Unix sockets bound to a path, read once (a scan asks
/// it about many sockets).
#[derive(Debug, Default)]
pub struct UnixTable {
    bound: std::collections::HashMap<Vec<u8>, UnixState>,
}

impl UnixTable {
    /// `None` when the table cannot be read (not Linux).
    pub fn read() -> Option<UnixTable> {
        Some(UnixTable::parse(&read_table("/proc/net/unix")?))
    }

    fn parse(table: &str) -> UnixTable {
        let mut t = UnixTable::default();
        for line in table.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let flags = cols.nth(3).and_then(|f| u32::from_str_radix(f, 16).ok()).unwrap_or(0);
            // Num RefCount Protocol Flags | Type St Inode Path
            let Some(path) = cols.nth(3) else { continue };
            let state = if flags & ACCEPTCON != 0 { UnixState::Listening } else { UnixState::Bound };
            let e = t.bound.entry(path.as_bytes().to_vec()).or_insert(state);
            if state == UnixState::Listening {
                *e = state;
            }
        }
        t
    }

    /// The state of the socket bound at `path`.
    pub fn state(&self, path: &Path) -> UnixState {
        self.bound.get(path.as_os_str().as_encoded_bytes()).copied().unwrap_or(UnixState::Absent)
    }
}

/// One listening TCP socket from `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpListen {
    pub local: SocketAddr,
    pub uid: u32,
    /// The socket's inode: `socket:[<inode>]` among a process's descriptors.
    pub inode: u64,
}

/// Every listening TCP socket of both families (empty where unknown).
pub fn tcp_listeners() -> Vec<TcpListen> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().filter_map(|t| read_table(t)).flat_map(|t| listens_in(&t)).collect()
}

fn listens_in(table: &str) -> Vec<TcpListen> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = parse_hex_addr(cols.get(1)?)?;
            let listening = u8::from_str_radix(cols.get(3)?, 16).ok()? == TCP_LISTEN;
            let uid = cols.get(7)?.parse().ok()?;
            let inode = cols.get(9)?.parse().ok()?;
            listening.then_some(TcpListen { local, uid, inode })
        })
        .collect()
}

/// The uid owning the TCP socket that listens for `addr` (on its address or
/// the wildcard of either family), `None` when none does or the tables
/// cannot be read.
pub fn tcp_listener_uid(addr: SocketAddr) -> Option<u32> {
    uid_for(&tcp_listeners(), addr)
}

fn uid_for(listens: &[TcpListen], addr: SocketAddr) -> Option<u32> {
    listens.iter().find(|l| l.local.port() == addr.port() && covers(l.local.ip(), addr.ip())).map(|l| l.uid)
}

/// The uid owning the client end of a TCP connection to a server on this
/// machine: the socket whose local address is `client` and whose remote one
/// is `server` (the server's end of that connection). `None` when it is not
/// found (the client is on another machine, or has gone) or the tables cannot
/// be read (macOS).
pub fn tcp_client_uid(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let tables = ["/proc/net/tcp", "/proc/net/tcp6"].iter().filter_map(|t| read_table(t));
    tables.into_iter().find_map(|t| client_uid_in(&t, canonical(client), canonical(server)))
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn client_uid_in(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local = canonical(parse_hex_addr(cols.get(1)?)?);
        let remote = canonical(parse_hex_addr(cols.get(2)?)?);
        if (local, remote) != (client, server) {
            return None;
        }
        cols.get(7)?.parse().ok()
    })
}

/// Who listens on TCP `port` of loopback or the wildcard (either family):
/// `pid 4242 (postgres)`, or `uid 1000` when the process cannot be found.
pub fn tcp_port_holder(port: u16) -> Option<String> {
    let found = tcp_listeners().into_iter().find(|l| l.local.port() == port && reaches_loopback(l.local.ip()))?;
    let pid = std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        socket_inodes(pid).contains(&found.inode).then_some(pid)
    });
    match pid {
        Some(pid) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            Some(format!("pid {pid} ({})", comm.trim()))
        }
        None => Some(format!("uid {}", found.uid)),
    }
}

/// Whether a listener bound to `ip` takes connections to loopback.
pub fn reaches_loopback(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || covers(ip, [127, 0, 0, 1].into())
}

/// The inodes of the sockets among `pid`'s descriptors.
pub fn socket_inodes(pid: u32) -> std::collections::BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Default::default() };
    fds.flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Whether a listener bound to `bound` receives connections for `to`.
fn covers(bound: IpAddr, to: IpAddr) -> bool {
    let to = match to {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(to, IpAddr::V4),
        v4 => v4,
    };
    let bound_v4 = match bound {
        IpAddr::V6(v6) if v6.is_unspecified() => return true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(bound, IpAddr::V4),
        v4 => v4,
    };
    bound_v4.is_unspecified() && to.is_ipv4() || bound_v4 == to
}

/// `0100007F:0BB8` (IPv4, host byte order per 32-bit word) or the 32-hex-digit
/// IPv6 form.
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| ip.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok()))
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.to_le_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn read_table(path: &str) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_TABLE).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 41190 /tmp/h/run/shop.main.80.sock
0000000000000000: 00000002 00000000 00000000 0001 01 41191 /tmp/h/run/shop.bound.80.sock
0000000000000000: 00000003 00000000 00000000 0001 03 41192
";

    #[test]
    fn unix_table() {
        let t = UnixTable::parse(UNIX);
        assert_eq!(t.state(Path::new("/tmp/h/run/shop.main.80.sock")), UnixState::Listening);
        assert_eq!(t.state(Path::new("/tmp/h/run/shop.bound.80.sock")), UnixState::Bound);
        assert_eq!(t.state(Path::new("/tmp/h/run/gone.sock")), UnixState::Absent);
    }

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 0100007F:1F91 0100007F:A000 01 00000000:00000000 00:00000000 00000000    33        0 3 1 0
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   501        0 4 1 0
   1: 00000000000000000000000000000000:138A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   502        0 5 1 0
";

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn tcp_listener_uid_in(table: &str, addr: SocketAddr) -> Option<u32> {
        uid_for(&listens_in(table), addr)
    }

    #[test]
    fn tcp_tables() {
        assert_eq!(tcp_listener_uid_in(TCP, a("127.0.0.1:3000")), Some(1000));
        assert_eq!(tcp_listener_uid_in(TCP, a("127.0.0.2:3000")), None);
        assert_eq!(tcp_listener_uid_in(TCP, a("127.0.0.1:8080")), Some(0), "0.0.0.0 covers 127.0.0.1");
        assert_eq!(tcp_listener_uid_in(TCP, a("127.0.0.1:8081")), None, "connected, not listening");
        assert_eq!(tcp_listener_uid_in(TCP6, a("[::1]:5001")), Some(501));
        assert_eq!(tcp_listener_uid_in(TCP6, a("127.0.0.1:5002")), Some(502), "[::] covers IPv4");
        assert_eq!(tcp_listener_uid_in(TCP6, a("127.0.0.1:5001")), None, "::1 is not 127.0.0.1");
    }

    #[test]
    fn the_uid_of_a_connection_s_client_end() {
        let (client, server) = (a("127.0.0.1:8081"), a("127.0.0.1:40960"));
        assert_eq!(client_uid_in(TCP, client, server), Some(33));
        assert_eq!(client_uid_in(TCP, server, client), None, "no socket has those ends the other way round");
        let mapped = |s| canonical(a(s));
        assert_eq!(client_uid_in(TCP, mapped("[::ffff:127.0.0.1]:8081"), mapped("[::ffff:127.0.0.1]:40960")), Some(33));
    }

    #[test]
    fn this_machine() {
        if !Path::new("/proc/net/tcp").exists() {
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(tcp_listener_uid(l.local_addr().unwrap()), Some(me));
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(tcp_client_uid(c.local_addr().unwrap(), l.local_addr().unwrap()), Some(me));
        let port = l.local_addr().unwrap().port();
        let holder = tcp_port_holder(port).unwrap();
        assert!(holder.starts_with(&format!("pid {} (", std::process::id())), "{holder}");
        let dir = crate::testutil::TempDir::new("procnet");
        let p = dir.path().join("x.sock");
        let u = std::os::unix::net::UnixListener::bind(&p).unwrap();
        assert_eq!(UnixTable::read().unwrap().state(&p), UnixState::Listening);
        drop(u);
        assert_eq!(UnixTable::read().unwrap().state(&p), UnixState::Absent, "the file stays, the listener is gone");
    }
}
