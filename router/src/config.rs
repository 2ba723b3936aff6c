//! What the router is told: where home is, which port, whether to face the
//! LAN, how long to drain, and the limits that keep bad clients cheap. Read
//! from the environment once, with one clear line for a bad value.

use std::time::Duration;

use agentfs_registry::{Home, env};

/// The port used when port 80 cannot be bound by this user.
pub const FALLBACK_PORT: u16 = 7355;
/// Default drain time on shutdown.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value:?} is not a port; expected a number from 1 to 65535")]
    BadPort { var: &'static str, value: String },
    #[error("{var}={value:?} is not a number of seconds; expected e.g. 10")]
    BadSeconds { var: &'static str, value: String },
    #[error("{var}={value:?} must be 0 (off) or 1 (on)")]
    BadSwitch { var: &'static str, value: String },
}

/// Limits on what one client may cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a whole request head (also the idle time of
    /// a kept-alive client connection between requests).
    pub header_read_timeout: Duration,
    /// Bytes of request line + headers; more is answered with 431.
    pub max_header_bytes: usize,
    /// Open client connections (WebSockets included); more wait in the backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { header_read_timeout: Duration::from_secs(20), max_header_bytes: 64 * 1024, max_connections: 16_384 }
    }
}

/// Everything [`crate::serve`] needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub home: Home,
    /// HTTP port; `None` applies the default rule ([`Config::http_port`]).
    /// `Some(0)` takes any free port (tests); the status API reports it.
    pub port: Option<u16>,
    /// Listen on all interfaces (`0.0.0.0` and `[::]`) instead of loopback only.
    pub lan: bool,
    /// How long in-flight requests may finish after a shutdown request.
    pub drain_timeout: Duration,
    /// How long a request for a starting instance waits for it to listen.
    pub start_wait: Duration,
    /// Safety-net rescan of `run/`, besides the watch and pid exits.
    pub rescan_interval: Duration,
    /// Also listen on loopback on the ports apps converted (see `original`).
    pub original_ports: bool,
    /// Keep the hosts file's agentfs block in step with the routes (`AGENTFS_SYNC_HOSTS=1`, see `hostsync`).
    pub sync_hosts: bool,
    /// Listening sockets the caller was handed (macOS: launchd's, taken by
    /// the CLI with `launch_activate_socket`); served instead of binding.
    pub passed: Passed,
    pub limits: Limits,
}

/// Listening sockets handed to the router, taken once by whoever serves.
#[derive(Clone, Debug, Default)]
pub struct Passed(std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpListener>>>);

impl Passed {
    pub fn new(listeners: Vec<std::net::TcpListener>) -> Passed {
        Passed(std::sync::Arc::new(std::sync::Mutex::new(listeners)))
    }

    /// The listeners, leaving none behind.
    pub fn take(&self) -> Vec<std::net::TcpListener> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Config {
    /// Defaults for `home`: port by the default rule, loopback, 10 s drain.
    pub fn new(home: Home) -> Config {
        Config {
            home,
            port: None,
            lan: false,
            drain_timeout: DEFAULT_DRAIN,
            start_wait: Duration::from_secs(30),
            rescan_interval: Duration::from_secs(5),
            original_ports: true,
            sync_hosts: false,
            passed: Passed::default(),
            limits: Limits::default(),
        }
    }

    /// [`Config::new`] with `AGENTFS_HTTP_PORT` and `AGENTFS_DRAIN_TIMEOUT_SECS` applied.
    pub fn from_env(home: Home) -> Result<Config, ConfigError> {
        Config::from_lookup(home, |k| std::env::var(k).ok())
    }

    /// Like [`Config::from_env`], reading variables through `get`.
    pub fn from_lookup(home: Home, get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::new(home);
        if let Some(v) = get(env::HTTP_PORT).filter(|v| !v.trim().is_empty()) {
            let port = v.trim().parse::<u16>().ok().filter(|p| *p != 0);
            c.port = Some(port.ok_or(ConfigError::BadPort { var: env::HTTP_PORT, value: v })?);
        }
        if let Some(v) = get(env::DRAIN_TIMEOUT_SECS).filter(|v| !v.trim().is_empty()) {
            let secs = v.trim().parse::<u64>().ok().filter(|s| *s <= 24 * 3600);
            let secs = secs.ok_or(ConfigError::BadSeconds { var: env::DRAIN_TIMEOUT_SECS, value: v })?;
            c.drain_timeout = Duration::from_secs(secs);
        }
        if let Some(v) = get(env::ORIGINAL_PORTS).filter(|v| !v.trim().is_empty()) {
            c.original_ports = match v.trim() {
                "1" => true,
                "0" => false,
                _ => return Err(ConfigError::BadSwitch { var: env::ORIGINAL_PORTS, value: v }),
            };
        }
        if let Some(v) = get(env::SYNC_HOSTS).filter(|v| !v.trim().is_empty()) {
            c.sync_hosts = match v.trim() {
                "1" => true,
                "0" => false,
                _ => return Err(ConfigError::BadSwitch { var: env::SYNC_HOSTS, value: v }),
            };
        }
        Ok(c)
    }

    /// The port to listen on: the configured one, else 80 where this user may
    /// bind it, else [`FALLBACK_PORT`].
    pub fn http_port(&self) -> u16 {
        self.port.unwrap_or_else(|| if may_bind_low_ports() { 80 } else { FALLBACK_PORT })
    }
}

/// Whether this process may bind port 80 on loopback: root, the
/// `CAP_NET_BIND_SERVICE` capability, or a low unprivileged-port sysctl
/// (Linux). On macOS only root may bind 127.0.0.1:80.
pub fn may_bind_low_ports() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if !cfg!(target_os = "linux") {
        return false;
    }
    let sysctl = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").ok();
    if sysctl.and_then(|s| s.trim().parse::<u32>().ok()).is_some_and(|start| start <= 80) {
        return true;
    }
    has_net_bind_capability(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

/// `CapEff` bit 10 (`CAP_NET_BIND_SERVICE`) in a `/proc/<pid>/status` text.
fn has_net_bind_capability(status: &str) -> bool {
    let cap = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
    cap.and_then(|hex| u64::from_str_radix(hex, 16).ok()).is_some_and(|bits| bits & (1 << 10) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Home {
        Home::at("/tmp/agentfs-config-test".into()).unwrap()
    }

    #[test]
    fn env_values_parse_or_fail_with_one_line() {
        let vars = |port: &'static str, drain: &'static str| {
            move |k: &str| match k {
                "AGENTFS_HTTP_PORT" => Some(port.to_owned()),
                "AGENTFS_DRAIN_TIMEOUT_SECS" => Some(drain.to_owned()),
                _ => None,
            }
        };
        let c = Config::from_lookup(home(), vars("8080", "3")).unwrap();
        assert_eq!((c.port, c.drain_timeout), (Some(8080), Duration::from_secs(3)));
        let c = Config::from_lookup(home(), vars("", "")).unwrap();
        assert_eq!((c.port, c.drain_timeout), (None, DEFAULT_DRAIN));
        for bad in ["0", "x", "70000", "-1"] {
            let e = Config::from_lookup(home(), vars(bad, "1")).unwrap_err();
            assert!(matches!(e, ConfigError::BadPort { .. }), "{bad}");
            assert!(!e.to_string().contains('\n'));
        }
        let e = Config::from_lookup(home(), vars("80", "soon")).unwrap_err();
        assert_eq!(e.to_string(), "AGENTFS_DRAIN_TIMEOUT_SECS=\"soon\" is not a number of seconds; expected e.g. 10");
    }

    #[test]
    fn port_rule() {
        let mut c = Config::new(home());
        c.port = Some(9000);
        assert_eq!(c.http_port(), 9000);
        c.port = None;
        let expected = if may_bind_low_ports() { 80 } else { FALLBACK_PORT };
        assert_eq!(c.http_port(), expected);
        assert!(has_net_bind_capability("Name:\tx\nCapEff:\t0000000000000400\n"));
        assert!(!has_net_bind_capability("CapEff:\t0000000000000000\n"));
    }
}
