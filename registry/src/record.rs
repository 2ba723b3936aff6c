//! The JSON records under `run/`: a sidecar per listening socket (written by
//! the shim after `listen()`, the router's source of truth) and a record per
//! running `agentfs wrap` (lets the router hold requests until the app listens).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::Label;
use crate::{atomic, safefile};

/// Schema version of both records.
pub const VERSION: u32 = 1;

/// Address family the app asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// Where a route sends requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address; the host is resolved when connecting (`localhost` means
    /// 127.0.0.1 then ::1).
    Tcp { host: String, port: u16 },
}

/// A target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad target {0:?}: expected /path/to.sock, host:port or port")]
pub struct TargetError(pub String);

impl FromStr for Target {
    type Err = TargetError;
    /// `/path/to.sock` | `host:port` | `[v6]:port` | `port`.
    fn from_str(s: &str) -> Result<Target, TargetError> {
        let err = || TargetError(s.to_owned());
        if s.starts_with('/') {
            return Ok(Target::Unix(PathBuf::from(s)));
        }
        if let Some(port) = crate::runfile::parse_port(s) {
            return Ok(Target::Tcp { host: "localhost".into(), port });
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
        let port = crate::runfile::parse_port(port).ok_or_else(err)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let valid = !host.is_empty()
            && (host.parse::<IpAddr>().is_ok()
                || host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !valid {
            return Err(err());
        }
        Ok(Target::Tcp { host: host.to_ascii_lowercase(), port })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One listening socket of a wrapped app: `<stem>.json` beside `<stem>.sock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub v: u32,
    pub app: Label,
    pub instance: Label,
    /// The TCP port the app asked for.
    pub port: u16,
    /// The Unix socket, absolute; `None` for a TCP route (`tcp` set instead).
    pub socket: Option<PathBuf>,
    /// A loopback TCP address to route to instead of a socket (the `PORT`
    /// fallback for programs the shim cannot enter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<std::net::SocketAddr>,
    /// The process that listens.
    pub pid: u32,
    /// The `agentfs wrap` that started it, if any.
    pub wrapper_pid: Option<u32>,
    pub family: Family,
    /// The address the app bound (`::`, `0.0.0.0`, `127.0.0.1`, ...).
    pub addr: IpAddr,
    pub cmd: Vec<String>,
    pub cwd: PathBuf,
    pub started_at_ms: u64,
}

impl Sidecar {
    /// Where requests for this listener go.
    pub fn target(&self) -> Option<Target> {
        if let Some(a) = self.tcp {
            return Some(Target::Tcp { host: a.ip().to_string(), port: a.port() });
        }
        self.socket.clone().map(Target::Unix)
    }
}

/// One running `agentfs wrap`: `<app>.<instance>.wrapper-<pid>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapperRecord {
    pub v: u32,
    pub app: Label,
    pub instance: Label,
    pub wrapper_pid: u32,
    pub cmd: Vec<String>,
    pub cwd: PathBuf,
    pub started_at_ms: u64,
    /// The command's process group (the pid of its first process), written
    /// once the command runs; lets the router stop what a killed wrapper
    /// leaves. Absent in records of older wrappers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
    /// The wrapper's `AGENTFS_STOP_TIMEOUT_SECS`: how long whoever stops the
    /// tree waits between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_secs: Option<u64>,
    /// The last processes of the tree the wrapper reaped, newest last (see
    /// [`crate::exit`]): how a listener that is gone ended, when the wrapper
    /// was the one to reap it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<crate::exit::Exit>,
    /// The instance's primary port as chosen by `wrap --port` / `AGENTFS_PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The first of its ports whose answer to `GET /` is `text/html`, as the
    /// wrapper probed it (see [`crate::model::choose_primary`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_port: Option<u16>,
}

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a valid agentfs record: {source}", .path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{} has schema version {found}, this agentfs reads version {VERSION}", .path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{} {why}; agentfs only reads its own files", .path.display())]
    Unsafe { path: PathBuf, why: safefile::SafeReadError },
}

impl RecordError {
    /// The record is not there (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RecordError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Records carry a schema version.
pub trait Versioned {
    fn version(&self) -> u32;
}
impl Versioned for Sidecar {
    fn version(&self) -> u32 {
        self.v
    }
}
impl Versioned for WrapperRecord {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Largest record read; anything bigger is not ours.
const MAX_RECORD: u64 = 64 * 1024;

/// Reads and validates a record: a regular file of ours (never a FIFO, a
/// symlink or another user's file; see [`safefile`]) of at most 64 KiB.
pub fn read<T: serde::de::DeserializeOwned + Versioned>(path: &Path) -> Result<T, RecordError> {
    let bytes = safefile::read_small(path, MAX_RECORD).map_err(|e| match e {
        safefile::SafeReadError::Io(source) => RecordError::Io { path: path.to_owned(), source },
        unsafe_file => RecordError::Unsafe { path: path.to_owned(), why: unsafe_file },
    })?;
    let rec: T =
        serde_json::from_slice(&bytes).map_err(|source| RecordError::Parse { path: path.to_owned(), source })?;
    if rec.version() != VERSION {
        return Err(RecordError::Version { path: path.to_owned(), found: rec.version() });
    }
    Ok(rec)
}

/// Writes a record atomically (temp file + rename), mode 0600.
pub fn write<T: Serialize>(path: &Path, rec: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(rec).map_err(io::Error::other)?;
    bytes.push(b'\n');
    atomic::write(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn sample(dir: &Path) -> Sidecar {
        Sidecar {
            v: VERSION,
            app: Label::parse("shop").unwrap(),
            instance: Label::parse("main").unwrap(),
            port: 3000,
            socket: Some(dir.join("shop.main.3000.sock")),
            tcp: None,
            pid: 42,
            wrapper_pid: Some(41),
            family: Family::Ipv6,
            addr: "::".parse().unwrap(),
            cmd: vec!["node".into(), "server.js".into()],
            cwd: "/src/shop".into(),
            started_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn sidecar_round_trip() {
        let t = TempDir::new("rec");
        let path = t.path().join("shop.main.3000.json");
        let s = sample(t.path());
        write(&path, &s).unwrap();
        let back: Sidecar = read(&path).unwrap();
        assert_eq!(back, s);
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for key in [
            "v",
            "app",
            "instance",
            "port",
            "socket",
            "pid",
            "wrapper_pid",
            "family",
            "addr",
            "cmd",
            "cwd",
            "started_at_ms",
        ] {
            assert!(json.get(key).is_some(), "sidecar lacks {key}: {json}");
        }
        assert_eq!(json["family"], "ipv6");
        assert_eq!(back.target(), Some(Target::Unix(t.path().join("shop.main.3000.sock"))));
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        let t = TempDir::new("rec");
        let path = t.path().join("x.json");
        for bad in ["", "{", "[]", "{\"v\":1}", "\u{0}\u{1}"] {
            std::fs::write(&path, bad).unwrap();
            assert!(matches!(read::<Sidecar>(&path), Err(RecordError::Parse { .. })), "{bad:?}");
        }
        let mut s = serde_json::to_value(sample(t.path())).unwrap();
        s["v"] = 2.into();
        std::fs::write(&path, s.to_string()).unwrap();
        assert!(matches!(read::<Sidecar>(&path), Err(RecordError::Version { found: 2, .. })));
        s["v"] = 1.into();
        s["app"] = "Bad App".into();
        std::fs::write(&path, s.to_string()).unwrap();
        assert!(matches!(read::<Sidecar>(&path), Err(RecordError::Parse { .. })));
        assert!(matches!(read::<Sidecar>(&t.path().join("missing.json")), Err(RecordError::Io { .. })));
    }

    #[test]
    fn targets_parse() {
        assert_eq!("/tmp/a.sock".parse(), Ok(Target::Unix("/tmp/a.sock".into())));
        assert_eq!("3000".parse(), Ok(Target::Tcp { host: "localhost".into(), port: 3000 }));
        assert_eq!("127.0.0.1:8080".parse(), Ok(Target::Tcp { host: "127.0.0.1".into(), port: 8080 }));
        assert_eq!("[::1]:8080".parse(), Ok(Target::Tcp { host: "::1".into(), port: 8080 }));
        assert_eq!("Api.Internal:80".parse(), Ok(Target::Tcp { host: "api.internal".into(), port: 80 }));
        for bad in ["", "x", "host:", ":80", "host:0", "host:99999", "a b:80", "rel/path.sock"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
        let v6: Target = "[::1]:8080".parse().unwrap();
        assert_eq!(v6.to_string(), "[::1]:8080");
        assert_eq!(v6.to_string().parse::<Target>().unwrap(), v6);
    }
}
