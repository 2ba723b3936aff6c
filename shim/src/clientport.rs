//! The client port both ends of a redirected connection report. TCP gives
//! the server the client's port (getpeername, accept); a Unix connection has
//! no port, and the two ends cannot derive the same one from their own
//! sockets (different inodes). So on Linux the redirected client's Unix
//! socket is bound, before it connects, to an abstract name that carries its
//! port, `\0agentfs-port.<port>.<inode>` (the inode keeps names unique), and
//! the server reads the port from the peer name the kernel gives it. A peer
//! without such a name (the router, any plain Unix client) gets a port
//! derived from the connection's inode, as before.

use libc::c_int;

use crate::sockaddr::Name;

const PREFIX: &[u8] = b"agentfs-port.";

/// Names the client socket `fd` (unconnected Unix) with `port`; nothing
/// happens where abstract names do not exist or the bind fails.
#[cfg(target_os = "linux")]
pub fn bind(fd: c_int, port: u16) {
    let ino = crate::sys::inode(fd).unwrap_or_default();
    // SAFETY: plain data, all-zero is valid.
    let mut un: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    un.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let mut text = [0u8; 64];
    let n = format_name(&mut text, port, ino);
    for (dst, src) in un.sun_path[1..].iter_mut().zip(&text[..n]) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + n;
    // SAFETY: `un` is a valid sockaddr_un; `len` covers the family, the NUL and the name.
    let _ = crate::errno::preserve(|| unsafe { libc::bind(fd, (&raw const un).cast(), len as libc::socklen_t) });
}

#[cfg(not(target_os = "linux"))]
pub fn bind(_fd: c_int, _port: u16) {}

/// `agentfs-port.<port>.<ino>` into `buf`; returns its length.
#[cfg(any(target_os = "linux", test))]
fn format_name(buf: &mut [u8; 64], port: u16, ino: u64) -> usize {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = cur.write_all(PREFIX);
    let _ = write!(cur, "{port}.{ino}");
    cur.position() as usize
}

/// The port carried by a Unix socket name given by the kernel.
pub fn from_name(name: &Name) -> Option<u16> {
    let rest = name.abstract_name()?.strip_prefix(PREFIX)?;
    let end = rest.iter().position(|b| *b == b'.')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The port of `fd`'s peer, when the peer named itself so.
pub fn of_peer(fd: c_int) -> Option<u16> {
    from_name(&crate::sys::peer_name(fd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut buf = [0u8; 64];
        let n = format_name(&mut buf, 50123, 987654);
        assert_eq!(&buf[..n], b"agentfs-port.50123.987654");
        let mut name = Name::empty();
        // SAFETY: storage is a sockaddr_storage, larger than sockaddr_un.
        let un = unsafe { &mut *(&raw mut name.storage).cast::<libc::sockaddr_un>() };
        un.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in un.sun_path[1..].iter_mut().zip(&buf[..n]) {
            *dst = *src as libc::c_char;
        }
        name.len = (std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + n) as libc::socklen_t;
        assert_eq!(from_name(&name), Some(50123));
        un.sun_path[1] = b'x' as libc::c_char;
        assert_eq!(from_name(&name), None);
    }
}
