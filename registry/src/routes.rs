//! Static routes (`agentfs route HOST TARGET`), kept in `routes.json` so a
//! router restart or a reboot loses none of them. Exact host match.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::names::Label;
use crate::record::{Target, VERSION};

/// The contents of `routes.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoutes {
    #[serde(default = "version")]
    pub v: u32,
    #[serde(default)]
    pub routes: BTreeMap<String, Target>,
}

fn version() -> u32 {
    VERSION
}

/// `routes.json` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not valid: {source}; fix or remove it", .path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{} holds an invalid host {host:?}: {why}", .path.display())]
    Host { path: PathBuf, host: String, why: HostError },
}

impl StaticRoutes {
    /// Reads `path`; a missing file is no routes.
    pub fn load(path: &Path) -> Result<StaticRoutes, RoutesError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StaticRoutes::default()),
            Err(source) => return Err(RoutesError::Io { path: path.to_owned(), source }),
        };
        let routes: StaticRoutes =
            serde_json::from_slice(&bytes).map_err(|source| RoutesError::Parse { path: path.to_owned(), source })?;
        for host in routes.routes.keys() {
            match normalize_host(host) {
                Ok(h) if h == *host => {}
                Ok(_) => {
                    let why = HostError::NotNormal;
                    return Err(RoutesError::Host { path: path.to_owned(), host: host.clone(), why });
                }
                Err(why) => return Err(RoutesError::Host { path: path.to_owned(), host: host.clone(), why }),
            }
        }
        Ok(routes)
    }

    /// Writes `path` atomically and durably.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        bytes.push(b'\n');
        atomic::write_durable(path, &bytes)
    }
}

/// A host that cannot carry a static route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("a static route's host must be localhost or end in .localhost, e.g. api.localhost")]
    NotLocalhost,
    #[error("every part of a host must be a DNS label (letters, digits, '-')")]
    BadLabel,
    #[error("host is not in normal form (lowercase, no port, no trailing dot)")]
    NotNormal,
}

/// Lowercases, drops one trailing dot, and checks that `host` is `localhost`
/// or a name under `.localhost` made of DNS labels.
pub fn normalize_host(host: &str) -> Result<String, HostError> {
    let lower = host.to_ascii_lowercase();
    let h = lower.strip_suffix('.').unwrap_or(&lower);
    if h != "localhost" && !h.ends_with(".localhost") {
        return Err(HostError::NotLocalhost);
    }
    if !h.split('.').all(|l| Label::parse(l).is_ok()) {
        return Err(HostError::BadLabel);
    }
    Ok(h.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn round_trip_and_missing_file() {
        let t = TempDir::new("routes");
        let p = t.path().join("routes.json");
        assert_eq!(StaticRoutes::load(&p).unwrap(), StaticRoutes::default());
        let mut r = StaticRoutes::default();
        r.routes.insert("api.localhost".into(), "127.0.0.1:3000".parse().unwrap());
        r.routes.insert("docs.localhost".into(), "/tmp/docs.sock".parse().unwrap());
        r.save(&p).unwrap();
        assert_eq!(StaticRoutes::load(&p).unwrap(), r);
    }

    #[test]
    fn bad_files_are_errors() {
        let t = TempDir::new("routes");
        let p = t.path().join("routes.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(StaticRoutes::load(&p), Err(RoutesError::Parse { .. })));
        std::fs::write(&p, r#"{"v":1,"routes":{"evil.example":"3000"}}"#).unwrap();
        assert!(matches!(StaticRoutes::load(&p), Err(RoutesError::Host { .. })));
        std::fs::write(&p, r#"{"v":1,"routes":{"a.localhost":"nope"}}"#).unwrap();
        assert!(matches!(StaticRoutes::load(&p), Err(RoutesError::Parse { .. })));
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("API.localhost.").unwrap(), "api.localhost");
        assert_eq!(normalize_host("localhost").unwrap(), "localhost");
        assert_eq!(normalize_host("a.b.localhost").unwrap(), "a.b.localhost");
        assert_eq!(normalize_host("evil.example"), Err(HostError::NotLocalhost));
        assert_eq!(normalize_host("app.localhost.evil.example"), Err(HostError::NotLocalhost));
        assert_eq!(normalize_host("a_b.localhost"), Err(HostError::BadLabel));
        assert_eq!(normalize_host("a..localhost"), Err(HostError::BadLabel));
        assert_eq!(normalize_host("api.localhost:80"), Err(HostError::NotLocalhost));
    }
}
