//! Static routes (`agentfs route HOST TARGET`), kept in `routes.json` so a
//! router restart or a reboot loses none of them. Exact host match.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Home;
use crate::names::Label;
use crate::record::{Target, VERSION};
use crate::{atomic, safefile};

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
    #[error("{} {why}; fix or remove it", .path.display())]
    Unsafe { path: PathBuf, why: safefile::SafeReadError },
}

/// Largest `routes.json` read (thousands of routes fit in it).
pub const MAX_ROUTES_FILE: u64 = 4 * 1024 * 1024;

impl StaticRoutes {
    /// Reads `path`; a missing file is no routes. Like every file of the
    /// contract it must be a regular file of ours (see [`safefile`]), here of
    /// at most [`MAX_ROUTES_FILE`] bytes.
    pub fn load(path: &Path) -> Result<StaticRoutes, RoutesError> {
        let bytes = match safefile::read_small(path, MAX_ROUTES_FILE) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(StaticRoutes::default()),
            Err(safefile::SafeReadError::Io(source)) => return Err(RoutesError::Io { path: path.to_owned(), source }),
            Err(why) => return Err(RoutesError::Unsafe { path: path.to_owned(), why }),
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

    /// Reads `routes.json` of `home`, applies `edit`, and saves it if `edit`
    /// changed it — all under an exclusive lock on the home directory, so
    /// that concurrent editors (several `agentfs route`, or one and the
    /// router) never lose each other's routes. A corrupt file is an error
    /// (never overwritten); a FIFO or device in its place is replaced.
    pub fn edit<T>(home: &Home, edit: impl FnOnce(&mut StaticRoutes) -> T) -> Result<T, RoutesError> {
        let path = home.routes_file();
        let io_err = |source| RoutesError::Io { path: home.root().to_owned(), source };
        let dir = std::fs::File::open(home.root()).map_err(io_err)?;
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io_err(e.into()))?;
        let mut routes = match StaticRoutes::load(&path) {
            // A FIFO or device there holds no routes: replaced by the rename.
            Err(RoutesError::Unsafe { why: safefile::SafeReadError::NotRegular, .. }) => StaticRoutes::default(),
            loaded => loaded?,
        };
        let before = routes.clone();
        let answer = edit(&mut routes);
        if routes != before {
            routes.save(&path).map_err(|source| RoutesError::Io { path: path.clone(), source })?;
        }
        Ok(answer)
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
    fn concurrent_edits_keep_every_route() {
        let t = TempDir::new("routes");
        let home = Home::at(t.path().join("h")).unwrap();
        home.ensure().unwrap();
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let home = home.clone();
                std::thread::spawn(move || {
                    StaticRoutes::edit(&home, |r| r.routes.insert(format!("r{i}.localhost"), "3000".parse().unwrap()))
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().is_none());
        }
        assert_eq!(StaticRoutes::load(&home.routes_file()).unwrap().routes.len(), 20);
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
