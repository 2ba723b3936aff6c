//! The environment of a wrapped process: variable names, and the parsing of
//! the knobs whose values are lists of ports.

/// Home directory of all agentfs files.
pub const HOME: &str = "AGENTFS_HOME";
/// App label of the wrapped process; the shim converts nothing without it.
pub const APP: &str = "AGENTFS_APP";
/// Instance label of the wrapped process.
pub const INSTANCE: &str = "AGENTFS_INSTANCE";
/// `<instance>.<app>.localhost`.
pub const HOSTNAME: &str = "AGENTFS_HOSTNAME";
/// `http://<instance>.<app>.localhost[:port]`.
pub const URL: &str = "AGENTFS_URL";
/// A socket path the app may bind itself.
pub const SOCKET: &str = "AGENTFS_SOCKET";
/// Absolute path of the shim library (used to re-inject on exec).
pub const SHIM: &str = "AGENTFS_SHIM";
/// `1` (log to `logs/shim.<pid>.log`) or `stderr`.
pub const DEBUG: &str = "AGENTFS_DEBUG";
/// Convert only these ports.
pub const PORTS: &str = "AGENTFS_PORTS";
/// Never convert these ports.
pub const SKIP_PORTS: &str = "AGENTFS_SKIP_PORTS";
/// Pid of `agentfs wrap`, recorded in sidecars (not in the spec's list: an
/// implementation detail shared by the CLI and the shim).
pub const WRAPPER_PID: &str = "AGENTFS_WRAPPER_PID";
/// `1` when `agentfs wrap --replica` asked for replicas: a second process of
/// the instance binding the same port gets a replica socket instead of
/// EADDRINUSE (also an implementation detail of the CLI and the shim).
pub const REPLICA: &str = "AGENTFS_REPLICA";
/// Router HTTP port.
pub const HTTP_PORT: &str = "AGENTFS_HTTP_PORT";
/// Seconds the router drains in-flight requests on shutdown.
pub const DRAIN_TIMEOUT_SECS: &str = "AGENTFS_DRAIN_TIMEOUT_SECS";
/// `0` turns off the router's listeners on the apps' original ports.
pub const ORIGINAL_PORTS: &str = "AGENTFS_ORIGINAL_PORTS";
/// `agentfs wrap --port N`: the instance's primary port.
pub const PORT: &str = "AGENTFS_PORT";
/// A free port `agentfs wrap` set aside for a program of the tree the shim
/// cannot enter (statically linked, Go): the exec hooks give it to such a
/// program as `PORT` (an implementation detail of the CLI and the shim).
pub const STATIC_PORT: &str = "AGENTFS_STATIC_PORT";
/// `0` turns off seccomp interception (Linux): programs of the tree the
/// shim cannot enter then get `PORT` and the listener scan instead.
pub const SECCOMP: &str = "AGENTFS_SECCOMP";
/// Seconds between SIGTERM and SIGKILL when a wrapped process tree is
/// stopped (default 5).
pub const STOP_TIMEOUT_SECS: &str = "AGENTFS_STOP_TIMEOUT_SECS";
/// `1`: the router keeps the hosts file's agentfs block in sync with its routes.
pub const SYNC_HOSTS: &str = "AGENTFS_SYNC_HOSTS";
/// The hosts file `agentfs hosts` edits (default `/etc/hosts`; for tests).
pub const HOSTS_FILE: &str = "AGENTFS_HOSTS_FILE";
/// Set by a background instance's supervisor for the `agentfs wrap` it runs
/// (not passed on to the command): the supervisor's own record that holds the
/// instance's name between runs does not make the name taken.
pub const SUPERVISOR_PID: &str = "AGENTFS_SUPERVISOR_PID";

/// A set of ports given as `3000,8000-8010`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

/// A port list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad port list {input:?}: {why}; expected e.g. 3000,8000-8010")]
pub struct PortSetError {
    pub input: String,
    pub why: &'static str,
}

impl PortSet {
    pub fn parse(input: &str) -> Result<PortSet, PortSetError> {
        let err = |why| PortSetError { input: input.to_owned(), why };
        let mut ranges = Vec::new();
        for item in input.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (port(a.trim()).ok_or(err("not a port"))?, port(b.trim()).ok_or(err("not a port"))?),
                None => {
                    let p = port(item).ok_or(err("not a port"))?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(err("a range runs backwards"));
            }
            ranges.push((lo, hi));
        }
        Ok(PortSet { ranges })
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, inclusive.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }
}

fn port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_sets() {
        let s = PortSet::parse("3000, 8000-8010,9229").unwrap();
        assert!(s.contains(3000) && s.contains(8005) && s.contains(9229));
        assert!(!s.contains(8011) && !s.contains(1));
        assert!(PortSet::parse("").unwrap().is_empty());
        assert!(PortSet::parse("x").is_err());
        assert!(PortSet::parse("0").is_err());
        assert!(PortSet::parse("10-5").is_err());
        assert!(PortSet::parse("70000").is_err());
        let e = PortSet::parse("3000,abc").unwrap_err();
        assert!(e.to_string().contains("3000,abc"));
    }
}
