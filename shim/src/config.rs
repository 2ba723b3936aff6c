//! What the shim was asked to do, read once from the environment in the
//! constructor and never changed: hooks only read it.

use std::path::PathBuf;
use std::sync::OnceLock;

use agentfs_registry::env::{self, PortSet};
use agentfs_registry::{Home, Label};

/// Where the decision log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Debug {
    Off,
    /// `$AGENTFS_HOME/logs/shim.<pid>.log`.
    File,
    Stderr,
}

/// The shim's settings. `identity` is `None` when `AGENTFS_APP` is unset or
/// invalid: then nothing is converted and hooks only keep their books.
#[derive(Clone, Debug)]
pub struct Config {
    pub identity: Option<Identity>,
    pub home: Option<Home>,
    pub debug: Debug,
    /// `AGENTFS_SIMULATE_SIP`: programs under this directory count as
    /// SIP-protected (tests of the macOS launch logic on Linux).
    pub simulate_sip: Option<PathBuf>,
}

/// A process that is part of an instance.
#[derive(Clone, Debug)]
pub struct Identity {
    pub app: Label,
    pub instance: Label,
    pub home: Home,
    pub run_dir: PathBuf,
    pub ports: Option<PortSet>,
    pub skip: PortSet,
    pub wrapper_pid: Option<u32>,
    pub replica: bool,
    /// The router answers the instances' ports on loopback (unless
    /// `AGENTFS_ORIGINAL_PORTS=0`): another instance's port is then refused
    /// here (see `elsewhere`).
    pub original_ports: bool,
}

impl Identity {
    /// Whether AGENTFS_PORTS / AGENTFS_SKIP_PORTS let this port be converted.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.ports.as_ref().is_none_or(|p| p.contains(port)) && !self.skip.contains(port)
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Reads the environment once. Problems are returned as lines for stderr.
pub fn init() -> Vec<String> {
    let (config, problems) = from_vars(|k| std::env::var(k).ok());
    let _ = CONFIG.set(config);
    problems
}

pub fn get() -> Option<&'static Config> {
    CONFIG.get()
}

/// The identity, when this process belongs to an instance.
pub fn identity() -> Option<&'static Identity> {
    CONFIG.get()?.identity.as_ref()
}

/// Builds the configuration from variable lookups (testable without a process).
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
    let mut problems = Vec::new();
    let debug = match var(env::DEBUG).as_deref() {
        None | Some("") | Some("0") => Debug::Off,
        Some("1") | Some("file") => Debug::File,
        Some("stderr") => Debug::Stderr,
        Some(other) => {
            problems.push(format!("ignoring {}={other:?}: expected 1 or stderr", env::DEBUG));
            Debug::Off
        }
    };
    let home = match var(env::HOME).filter(|h| !h.is_empty()) {
        Some(h) => Home::at(PathBuf::from(h)),
        None => Home::from_env(),
    };
    let simulate_sip =
        var(agentfs_registry::launch::SIMULATE_SIP_VAR).filter(|d| d.starts_with('/')).map(PathBuf::from);
    let app = var(env::APP).filter(|a| !a.is_empty());
    let Some(app) = app else {
        return (Config { identity: None, home: home.ok(), debug, simulate_sip }, problems);
    };
    let home = home.map_err(|e| e.to_string());
    let identity = match parse_identity(&var, &app, home.clone()) {
        Ok(id) => Some(id),
        Err(why) => {
            problems.push(format!("{why}; no port of this process will be converted"));
            None
        }
    };
    (Config { identity, home: home.ok(), debug, simulate_sip }, problems)
}

fn parse_identity(
    var: &impl Fn(&str) -> Option<String>,
    app: &str,
    home: Result<Home, String>,
) -> Result<Identity, String> {
    let app = Label::parse(app).map_err(|e| format!("{}: {e}", env::APP))?;
    let instance = var(env::INSTANCE).unwrap_or_else(|| "default".to_owned());
    let instance = Label::parse_instance(&instance).map_err(|e| format!("{}: {e}", env::INSTANCE))?;
    let home = home?;
    let ports = match var(env::PORTS).filter(|p| !p.trim().is_empty()) {
        Some(p) => Some(PortSet::parse(&p).map_err(|e| format!("{}: {e}", env::PORTS))?),
        None => None,
    };
    let skip =
        PortSet::parse(&var(env::SKIP_PORTS).unwrap_or_default()).map_err(|e| format!("{}: {e}", env::SKIP_PORTS))?;
    let wrapper_pid = var(env::WRAPPER_PID).and_then(|p| p.parse().ok());
    let replica = var(env::REPLICA).as_deref() == Some("1");
    let original_ports = var(env::ORIGINAL_PORTS).as_deref().map(str::trim) != Some("0");
    Ok(Identity { run_dir: home.run_dir(), app, instance, home, ports, skip, wrapper_pid, replica, original_ports })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> (Config, Vec<String>) {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        from_vars(move |k| map.get(k).cloned())
    }

    #[test]
    fn no_app_converts_nothing_silently() {
        let (c, problems) = cfg(&[("AGENTFS_HOME", "/h")]);
        assert!(c.identity.is_none());
        assert!(problems.is_empty());
    }

    #[test]
    fn full_identity() {
        let (c, problems) = cfg(&[
            ("AGENTFS_HOME", "/h"),
            ("AGENTFS_APP", "shop"),
            ("AGENTFS_INSTANCE", "feat-x"),
            ("AGENTFS_SKIP_PORTS", "9229"),
            ("AGENTFS_PORTS", "3000-3010,9229"),
            ("AGENTFS_WRAPPER_PID", "12"),
            ("AGENTFS_DEBUG", "stderr"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let id = c.identity.unwrap();
        assert_eq!((id.app.as_str(), id.instance.as_str()), ("shop", "feat-x"));
        assert_eq!(id.run_dir, PathBuf::from("/h/run"));
        assert!(id.port_allowed(3000) && !id.port_allowed(9229) && !id.port_allowed(8000));
        assert_eq!(id.wrapper_pid, Some(12));
        assert_eq!(c.debug, Debug::Stderr);
    }

    #[test]
    fn bad_values_disable_conversion_with_one_line_each() {
        for (k, v) in
            [("AGENTFS_APP", "Bad App"), ("AGENTFS_INSTANCE", "123"), ("AGENTFS_PORTS", "x"), ("AGENTFS_HOME", "rel")]
        {
            let mut pairs = vec![("AGENTFS_HOME", "/h"), ("AGENTFS_APP", "shop")];
            pairs.retain(|(pk, _)| *pk != k);
            pairs.push((k, v));
            let (c, problems) = cfg(&pairs);
            assert!(c.identity.is_none(), "{k}={v}");
            assert_eq!(problems.len(), 1, "{k}={v}: {problems:?}");
        }
        let (c, problems) = cfg(&[("AGENTFS_HOME", "/h"), ("AGENTFS_DEBUG", "yes")]);
        assert_eq!(c.debug, Debug::Off);
        assert_eq!(problems.len(), 1);
    }
}
