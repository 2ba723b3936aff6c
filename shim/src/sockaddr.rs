//! Socket addresses across the C boundary: reading the app's `sockaddr`,
//! writing faked ones back exactly as the kernel would (copy at most the
//! caller's buffer, always report the full length), and the kernel's names
//! of Unix sockets.

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{c_int, sa_family_t, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, sockaddr_un, socklen_t};

use agentfs_registry::Family;

/// A socket address stored in the shim's tables: plain data, valid when
/// zeroed (an unspecified IPv4 address, port 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addr {
    pub v6: bool,
    pub ip: [u8; 16],
    pub port: u16,
}

impl Addr {
    pub fn family(&self) -> Family {
        if self.v6 { Family::Ipv6 } else { Family::Ipv4 }
    }

    pub fn to_std(self) -> SocketAddr {
        if self.v6 {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(self.ip), self.port, 0, 0))
        } else {
            let [a, b, c, d, ..] = self.ip;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), self.port))
        }
    }

    pub fn from_std(a: SocketAddr) -> Addr {
        let mut ip = [0u8; 16];
        match a.ip() {
            IpAddr::V4(v4) => ip[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => ip = v6.octets(),
        }
        Addr { v6: a.is_ipv6(), ip, port: a.port() }
    }

    /// The loopback address of `family` with `port`.
    pub fn loopback(family: Family, port: u16) -> Addr {
        let ip = match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        Addr::from_std(SocketAddr::new(ip, port))
    }
}

/// Loopback (127/8, ::1, ::ffff:127/8) or wildcard (0.0.0.0, ::, ::ffff:0.0.0.0).
pub fn is_convertible(ip: IpAddr) -> bool {
    is_loopback(ip) || unmapped(ip).is_unspecified()
}

/// Loopback in any of its spellings.
pub fn is_loopback(ip: IpAddr) -> bool {
    unmapped(ip).is_loopback()
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Reads an `AF_INET`/`AF_INET6` address; `None` for other families and for
/// buffers too short to hold one (the kernel then answers for itself).
///
/// # Safety
/// `addr` must be null or point to `len` readable bytes.
pub unsafe fn read_inet(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < size_of::<sa_family_t>() + 2 {
        return None;
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = c_int::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET if len as usize >= size_of::<sockaddr_in>() => {
            // SAFETY: the buffer holds a whole sockaddr_in; read_unaligned makes no alignment assumption.
            let sin = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len as usize >= size_of::<sockaddr_in6>() => {
            // SAFETY: the buffer holds a whole sockaddr_in6.
            let sin6 = unsafe { std::ptr::read_unaligned(addr.cast::<sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Encodes an address as the kernel would return it.
pub fn encode(a: &SocketAddr) -> (sockaddr_storage, socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: sockaddr_storage = unsafe { zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in is plain data.
            let mut sin: sockaddr_in = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            #[cfg(target_vendor = "apple")]
            {
                sin.sin_len = size_of::<sockaddr_in>() as u8;
            }
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast::<sockaddr_in>(), sin) };
            size_of::<sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 is plain data.
            let mut sin6: sockaddr_in6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            #[cfg(target_vendor = "apple")]
            {
                sin6.sin6_len = size_of::<sockaddr_in6>() as u8;
            }
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast::<sockaddr_in6>(), sin6) };
            size_of::<sockaddr_in6>()
        }
    };
    (storage, len as socklen_t)
}

/// The `(addr, addrlen)` out-parameters of accept/getsockname/getpeername.
pub struct OutAddr {
    addr: *mut sockaddr,
    len: *mut socklen_t,
}

impl OutAddr {
    /// # Safety
    /// Either pointer may be null; when `addr` and `len` are both non-null,
    /// `len` points to a writable length and `addr` to that many writable bytes.
    pub unsafe fn new(addr: *mut sockaddr, len: *mut socklen_t) -> OutAddr {
        OutAddr { addr, len }
    }

    /// Whether the caller asked for an address.
    pub fn wanted(&self) -> bool {
        !self.addr.is_null() && !self.len.is_null()
    }

    /// Copies `bytes[..total]` like the kernel: at most the caller's buffer,
    /// and the full length reported in `*len` (so truncation is visible).
    pub fn write_raw(&self, storage: &sockaddr_storage, total: socklen_t) {
        if !self.wanted() {
            return;
        }
        // SAFETY: `len` is a valid, writable length (constructor contract).
        let room = unsafe { *self.len };
        let n = room.min(total) as usize;
        let n = n.min(size_of::<sockaddr_storage>());
        // SAFETY: `addr` has `room` >= n writable bytes, `storage` has at least n readable bytes,
        // and the two cannot overlap (one is our stack value).
        unsafe {
            std::ptr::copy_nonoverlapping((storage as *const sockaddr_storage).cast::<u8>(), self.addr.cast::<u8>(), n);
            *self.len = total;
        }
    }

    pub fn write(&self, a: Addr) {
        let (storage, len) = encode(&a.to_std());
        self.write_raw(&storage, len);
    }
}

/// A socket's own or peer name as the kernel reports it.
pub struct Name {
    pub storage: sockaddr_storage,
    pub len: socklen_t,
}

impl Name {
    pub fn empty() -> Name {
        // SAFETY: plain data, all-zero is valid.
        Name { storage: unsafe { zeroed() }, len: size_of::<sockaddr_storage>() as socklen_t }
    }

    pub fn family(&self) -> c_int {
        c_int::from(self.storage.ss_family)
    }

    pub fn as_mut_ptrs(&mut self) -> (*mut sockaddr, *mut socklen_t) {
        ((&raw mut self.storage).cast(), &raw mut self.len)
    }

    /// The bytes of `sun_path` the kernel reported, for an `AF_UNIX` name.
    fn sun_path(&self) -> Option<&[u8]> {
        if self.family() != libc::AF_UNIX {
            return None;
        }
        // SAFETY: storage is large enough for sockaddr_un and holds one (family checked).
        let un = unsafe { &*(&raw const self.storage).cast::<sockaddr_un>() };
        let offset = std::mem::offset_of!(sockaddr_un, sun_path);
        let n = (self.len as usize).saturating_sub(offset).min(un.sun_path.len());
        // SAFETY: c_char and u8 have the same size and layout.
        Some(unsafe { std::slice::from_raw_parts(un.sun_path.as_ptr().cast::<u8>(), n) })
    }

    /// The path of a named `AF_UNIX` socket (without the NUL), if it is one.
    pub fn unix_path(&self) -> Option<&[u8]> {
        let bytes = self.sun_path()?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        (end > 0).then(|| &bytes[..end])
    }

    /// The name of an abstract `AF_UNIX` socket (after its leading NUL).
    pub fn abstract_name(&self) -> Option<&[u8]> {
        let (first, rest) = self.sun_path()?.split_first()?;
        (*first == 0 && !rest.is_empty()).then_some(rest)
    }

    pub fn inet(&self) -> Option<SocketAddr> {
        // SAFETY: storage holds `len` initialised bytes.
        unsafe { read_inet((&raw const self.storage).cast(), self.len) }
    }
}

/// A `sockaddr_un` for `path`; `None` if it does not fit.
pub fn unix(path: &[u8]) -> Option<(sockaddr_un, socklen_t)> {
    // SAFETY: plain data, all-zero is valid.
    let mut un: sockaddr_un = unsafe { zeroed() };
    if path.len() >= un.sun_path.len() || path.contains(&0) {
        return None;
    }
    un.sun_family = libc::AF_UNIX as sa_family_t;
    for (dst, src) in un.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::offset_of!(sockaddr_un, sun_path) + path.len() + 1;
    #[cfg(target_vendor = "apple")]
    {
        un.sun_len = len as u8;
    }
    Some((un, len as socklen_t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convertible_addresses() {
        for ok in ["127.0.0.1", "127.1.2.3", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"] {
            assert!(is_convertible(ok.parse().unwrap()), "{ok}");
        }
        for no in ["192.168.1.2", "10.0.0.1", "fe80::1", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(!is_convertible(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn encode_read_round_trip() {
        for s in ["127.0.0.1:3000", "[::]:8000", "[::1]:1", "0.0.0.0:65535"] {
            let a: SocketAddr = s.parse().unwrap();
            let (st, len) = encode(&a);
            // SAFETY: `st` holds `len` valid bytes.
            let back = unsafe { read_inet((&raw const st).cast(), len) };
            assert_eq!(back, Some(a));
            assert_eq!(Addr::from_std(a).to_std(), a);
        }
    }

    #[test]
    fn short_buffers_truncate_and_report_full_length() {
        let a = Addr::from_std("[::]:3000".parse().unwrap());
        let mut buf = [0xAAu8; 8];
        let mut len: socklen_t = 8;
        // SAFETY: buf has `len` writable bytes.
        let out = unsafe { OutAddr::new(buf.as_mut_ptr().cast(), &mut len) };
        out.write(a);
        assert_eq!(len as usize, size_of::<sockaddr_in6>());
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 3000);
        // SAFETY: null pointers mean "not wanted".
        let none = unsafe { OutAddr::new(std::ptr::null_mut(), std::ptr::null_mut()) };
        none.write(a);
    }

    #[test]
    fn unix_names() {
        let (un, len) = unix(b"/tmp/x.sock").unwrap();
        let mut n = Name::empty();
        // SAFETY: both are plain data and sockaddr_storage is larger.
        unsafe { std::ptr::write((&raw mut n.storage).cast::<sockaddr_un>(), un) };
        n.len = len;
        assert_eq!(n.unix_path(), Some(&b"/tmp/x.sock"[..]));
        assert!(unix(&[b'a'; 200]).is_none());
    }
}
