//! The names of the files under `run/`: a socket and its sidecar per listener
//! (`<app>.<instance>.<port>[.<pid>-<n>]`), a short hashed name when the full
//! one would not fit in `sun_path`, and one record per running wrapper.
//! Files whose names start with `.` are temporary and ignored by readers.

use std::path::Path;

use crate::names::{Label, fnv1a64};
use crate::sunpath;

/// Suffix of socket files.
pub const SOCK_EXT: &str = "sock";
/// Suffix of sidecars and wrapper records.
pub const JSON_EXT: &str = "json";
/// Prefix of hashed stems.
pub const HASHED_PREFIX: &str = "h-";
const WRAPPER_PREFIX: &str = "wrapper-";

/// Tells apart two sockets of one (app, instance, port) in one run directory:
/// the binding pid and a per-process counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Replica {
    pub pid: u32,
    pub n: u32,
}

/// The identity a listener's file name carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketName {
    pub app: Label,
    pub instance: Label,
    pub port: u16,
    pub replica: Option<Replica>,
}

impl SocketName {
    pub fn new(app: Label, instance: Label, port: u16) -> SocketName {
        SocketName { app, instance, port, replica: None }
    }

    pub fn with_replica(&self, pid: u32, n: u32) -> SocketName {
        SocketName { replica: Some(Replica { pid, n }), ..self.clone() }
    }

    /// `<app>.<instance>.<port>` or `<app>.<instance>.<port>.<pid>-<n>`.
    pub fn stem(&self) -> String {
        match self.replica {
            None => format!("{}.{}.{}", self.app, self.instance, self.port),
            Some(r) => format!("{}.{}.{}.{}-{}", self.app, self.instance, self.port, r.pid, r.n),
        }
    }

    /// The stem to use in `run_dir`: the full one, or a short hashed one when a
    /// socket path with the full stem would not fit in `sun_path`.
    pub fn stem_in(&self, run_dir: &Path) -> String {
        let full = self.stem();
        let path = run_dir.join(format!("{full}.{SOCK_EXT}"));
        if sunpath::fits(&path) { full } else { hashed_stem(&full) }
    }

    /// Parses a full stem; `None` for hashed, wrapper or foreign stems.
    pub fn parse_stem(stem: &str) -> Option<SocketName> {
        let mut parts = stem.split('.');
        let app = Label::parse(parts.next()?).ok()?;
        let instance = Label::parse_instance(parts.next()?).ok()?;
        let port = parse_port(parts.next()?)?;
        let replica = match parts.next() {
            None => None,
            Some(r) => {
                let (pid, n) = r.split_once('-')?;
                Some(Replica { pid: parse_u32(pid)?, n: parse_u32(n)? })
            }
        };
        if parts.next().is_some() {
            return None;
        }
        Some(SocketName { app, instance, port, replica })
    }
}

/// `h-<16 hex>`: short, stable, and never a valid full stem (no dots).
pub fn hashed_stem(full_stem: &str) -> String {
    format!("{HASHED_PREFIX}{:016x}", fnv1a64(full_stem.as_bytes()))
}

/// Stem of a wrapper's record: `<app>.<instance>.wrapper-<pid>`.
pub fn wrapper_stem(app: &Label, instance: &Label, wrapper_pid: u32) -> String {
    format!("{app}.{instance}.{WRAPPER_PREFIX}{wrapper_pid}")
}

/// What a file in `run/` is, judged by its name alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunFile {
    /// A socket with a full stem.
    Socket(SocketName),
    /// A socket with a hashed stem: identity only from its sidecar.
    HashedSocket(String),
    /// The sidecar of the socket with this stem (full or hashed).
    Sidecar(String),
    /// A wrapper record.
    Wrapper { app: Label, instance: Label, pid: u32 },
    /// Temporary files (leading `.`) and anything else: not ours to read.
    Other,
}

impl RunFile {
    pub fn classify(file_name: &str) -> RunFile {
        if file_name.starts_with('.') {
            return RunFile::Other;
        }
        if let Some(stem) = file_name.strip_suffix(".sock") {
            if is_hashed_stem(stem) {
                return RunFile::HashedSocket(stem.to_owned());
            }
            return SocketName::parse_stem(stem).map_or(RunFile::Other, RunFile::Socket);
        }
        let Some(stem) = file_name.strip_suffix(".json") else {
            return RunFile::Other;
        };
        if let Some(w) = parse_wrapper_stem(stem) {
            return w;
        }
        if is_hashed_stem(stem) || SocketName::parse_stem(stem).is_some() {
            return RunFile::Sidecar(stem.to_owned());
        }
        RunFile::Other
    }
}

fn parse_wrapper_stem(stem: &str) -> Option<RunFile> {
    let mut parts = stem.split('.');
    let app = Label::parse(parts.next()?).ok()?;
    let instance = Label::parse_instance(parts.next()?).ok()?;
    let pid = parse_u32(parts.next()?.strip_prefix(WRAPPER_PREFIX)?)?;
    parts.next().is_none().then_some(RunFile::Wrapper { app, instance, pid })
}

pub fn is_hashed_stem(stem: &str) -> bool {
    stem.strip_prefix(HASHED_PREFIX).is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A decimal port 1–65535 without sign or leading zeros.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.starts_with('0') {
        return None;
    }
    let n = parse_u32(s)?;
    u16::try_from(n).ok().filter(|p| *p != 0)
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(app: &str, inst: &str, port: u16) -> SocketName {
        SocketName::new(Label::parse(app).unwrap(), Label::parse(inst).unwrap(), port)
    }

    #[test]
    fn stems_round_trip() {
        let n = name("shop", "feat-x", 3000);
        assert_eq!(n.stem(), "shop.feat-x.3000");
        assert_eq!(SocketName::parse_stem(&n.stem()), Some(n.clone()));
        let r = n.with_replica(4242, 2);
        assert_eq!(r.stem(), "shop.feat-x.3000.4242-2");
        assert_eq!(SocketName::parse_stem(&r.stem()), Some(r));
    }

    #[test]
    fn bad_stems_are_rejected() {
        for s in [
            "shop.main",
            "shop.main.0",
            "shop.main.65536",
            "shop.main.03000",
            "shop.123.3000",
            "Shop.main.3000",
            "shop.main.3000.x-1",
            "shop.main.3000.1-2.extra",
            "shop.main.+3000",
        ] {
            assert_eq!(SocketName::parse_stem(s), None, "{s}");
        }
    }

    #[test]
    fn classify_files() {
        assert_eq!(RunFile::classify("shop.main.3000.sock"), RunFile::Socket(name("shop", "main", 3000)));
        assert_eq!(RunFile::classify("shop.main.3000.json"), RunFile::Sidecar("shop.main.3000".into()));
        let h = hashed_stem("x.y.1");
        assert_eq!(RunFile::classify(&format!("{h}.sock")), RunFile::HashedSocket(h.clone()));
        assert_eq!(RunFile::classify(&format!("{h}.json")), RunFile::Sidecar(h));
        let w = wrapper_stem(&Label::parse("shop").unwrap(), &Label::parse("main").unwrap(), 77);
        assert_eq!(w, "shop.main.wrapper-77");
        assert!(matches!(RunFile::classify(&format!("{w}.json")), RunFile::Wrapper { pid: 77, .. }));
        assert_eq!(RunFile::classify(".shop.main.3000.json.tmp"), RunFile::Other);
        assert_eq!(RunFile::classify("notes.txt"), RunFile::Other);
        assert_eq!(RunFile::classify("shop.main.3000.txt"), RunFile::Other);
    }

    #[test]
    fn hashed_stems_are_short_and_stable() {
        let a = hashed_stem("shop.main.3000");
        assert_eq!(a, hashed_stem("shop.main.3000"));
        assert_ne!(a, hashed_stem("shop.main.3001"));
        assert_eq!(a.len(), 18);
        assert!(is_hashed_stem(&a));
        assert!(!is_hashed_stem("h-xyz"));
    }

    #[test]
    fn long_names_get_hashed_stems() {
        let n = name(&"a".repeat(63), &"b".repeat(63), 3000);
        let short_dir = Path::new("/tmp/r");
        assert!(is_hashed_stem(&n.stem_in(short_dir)));
        let small = name("shop", "main", 3000);
        assert_eq!(small.stem_in(short_dir), "shop.main.3000");
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("3000"), Some(3000));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["0", "65536", "", "-1", "03", "3e3", " 1"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }
}
