//! Socket options a Unix socket cannot hold: TCP-, IP- and IPv6-level ones,
//! and SOL_SOCKET ones AF_UNIX refuses (SO_REUSEPORT). They are kept per
//! descriptor and read back as set, so `setNoDelay()`, asyncio's TCP_NODELAY
//! and `getsockopt(IPV6_V6ONLY)` behave as on TCP.

use libc::c_int;

const SLOTS: usize = 8;
const VALUE: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    level: c_int,
    name: c_int,
    len: u8,
    value: [u8; VALUE],
}

/// A small map (level, name) → value bytes; plain data, valid when zeroed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    slots: [Slot; SLOTS],
}

impl Options {
    /// Stores a value; `false` when it is too long or the store is full (the
    /// caller still reports success: the option has no effect on a Unix socket).
    pub fn set(&mut self, level: c_int, name: c_int, value: &[u8]) -> bool {
        if value.is_empty() || value.len() > VALUE {
            return false;
        }
        let idx = self.slots.iter().position(|s| s.len != 0 && s.level == level && s.name == name);
        let Some(slot) = idx.or_else(|| self.slots.iter().position(|s| s.len == 0)) else {
            return false;
        };
        let s = &mut self.slots[slot];
        s.level = level;
        s.name = name;
        s.len = value.len() as u8;
        s.value = [0; VALUE];
        s.value[..value.len()].copy_from_slice(value);
        true
    }

    pub fn get(&self, level: c_int, name: c_int) -> Option<&[u8]> {
        self.slots.iter().find(|s| s.len != 0 && s.level == level && s.name == name).map(|s| &s.value[..s.len as usize])
    }

    /// Every stored `(level, name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (c_int, c_int, &[u8])> {
        self.slots.iter().filter(|s| s.len != 0).map(|s| (s.level, s.name, &s.value[..s.len as usize]))
    }
}

/// Levels whose options are answered from the store on converted sockets.
pub fn is_faked_level(level: c_int) -> bool {
    level == libc::IPPROTO_TCP || level == libc::IPPROTO_IP || level == libc::IPPROTO_IPV6
}

/// Errors that mean "a Unix socket has no such option": the signal to fake it.
pub fn is_unsupported(errno: c_int) -> bool {
    errno == libc::EOPNOTSUPP || errno == libc::ENOPROTOOPT || errno == libc::EINVAL
}

/// `SOL_SOCKET` options copied from the TCP socket to its Unix replacement
/// when their values differ. Buffer sizes are set to half of what is read:
/// the kernel doubles on set and reports the doubled value.
pub const REPLAYED: &[c_int] =
    &[libc::SO_REUSEADDR, libc::SO_KEEPALIVE, libc::SO_RCVBUF, libc::SO_SNDBUF, libc::SO_RCVLOWAT, libc::SO_OOBINLINE];

/// Options read from the TCP socket into the store at conversion, so what
/// the app set before bind reads back afterwards. SO_REUSEPORT is stored,
/// never replayed: AF_UNIX refuses it.
pub fn carried(v6: bool) -> &'static [(c_int, c_int)] {
    const V4: &[(c_int, c_int)] = &[
        (libc::SOL_SOCKET, libc::SO_REUSEPORT),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY),
        #[cfg(target_os = "linux")]
        (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
        #[cfg(target_os = "linux")]
        (libc::IPPROTO_TCP, libc::TCP_FASTOPEN),
    ];
    const V6: &[(c_int, c_int)] = &[
        (libc::SOL_SOCKET, libc::SO_REUSEPORT),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY),
        #[cfg(target_os = "linux")]
        (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
        #[cfg(target_os = "linux")]
        (libc::IPPROTO_TCP, libc::TCP_FASTOPEN),
        (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
    ];
    if v6 { V6 } else { V4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_overwrite() {
        let mut o = Options::default();
        assert!(o.get(6, 1).is_none());
        assert!(o.set(6, 1, &1i32.to_ne_bytes()));
        assert_eq!(o.get(6, 1), Some(&1i32.to_ne_bytes()[..]));
        assert!(o.set(6, 1, &0i32.to_ne_bytes()));
        assert_eq!(o.get(6, 1), Some(&0i32.to_ne_bytes()[..]));
        assert!(!o.set(6, 2, &[0; 17]), "too long");
        assert!(!o.set(6, 2, &[]), "empty");
    }

    #[test]
    fn full_store_refuses_new_names_but_updates_old_ones() {
        let mut o = Options::default();
        for name in 0..SLOTS as c_int {
            assert!(o.set(6, name, &[1]));
        }
        assert!(!o.set(6, 100, &[1]));
        assert!(o.set(6, 0, &[2]));
        assert_eq!(o.get(6, 0), Some(&[2u8][..]));
    }
}
