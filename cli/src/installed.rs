//! The router as the system runs it, once `agentfs install` has written its
//! units: finding the installation that serves this home (a unit written
//! for another `AGENTFS_HOME` is not this home's router), and starting and
//! stopping it through its manager, so `agentfs router start|stop` and
//! `wrap`'s automatic start never run a second router beside the one the
//! system holds the ports for.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use agentfs_registry::Home;

/// The launchd label and the systemd unit name.
pub const NAME: &str = "agentfs-router";
pub const LABEL: &str = "dev.agentfs.router";

/// Who loads the files `agentfs install` writes, and so who starts and stops the router.
pub enum Manager {
    Launchd { plist: PathBuf },
    Systemd { user: bool },
}

/// An installed router: the file that declares it and its manager.
pub struct Installed {
    pub path: PathBuf,
    pub manager: Manager,
}

impl Manager {
    /// After the files are written: make the manager hold the sockets.
    pub fn load(&self) -> Vec<Vec<String>> {
        match self {
            Manager::Launchd { plist } => vec![launchctl(&["bootstrap", &domain(), &plist.display().to_string()])],
            Manager::Systemd { user } => {
                vec![systemctl(*user, &["daemon-reload"]), systemctl(*user, &["enable", "--now", &unit("socket")])]
            }
        }
    }

    /// Before the files are removed.
    pub fn unload(&self) -> Vec<Vec<String>> {
        match self {
            Manager::Launchd { plist } => vec![launchctl(&["bootout", &domain(), &plist.display().to_string()])],
            Manager::Systemd { user } => vec![
                systemctl(*user, &["disable", "--now", &unit("socket"), &unit("service")]),
                systemctl(*user, &["daemon-reload"]),
            ],
        }
    }

    /// Starts the router now (not at the first request), on the manager's sockets.
    fn start(&self) -> Vec<Vec<String>> {
        match self {
            Manager::Launchd { plist } if !launchd_loaded() => {
                vec![launchctl(&["bootstrap", &domain(), &plist.display().to_string()])]
            }
            Manager::Launchd { .. } => vec![launchctl(&["kickstart", &service_target()])],
            Manager::Systemd { user } => vec![systemctl(*user, &["start", &unit("socket"), &unit("service")])],
        }
    }

    /// Stops the router and its sockets, so a request does not start it again.
    fn stop(&self) -> Vec<Vec<String>> {
        match self {
            Manager::Launchd { .. } => vec![launchctl(&["bootout", &service_target()])],
            Manager::Systemd { user } => vec![systemctl(*user, &["stop", &unit("socket"), &unit("service")])],
        }
    }

    /// Who starts the router, for messages: "systemd (user)" …
    pub fn name(&self) -> &'static str {
        match self {
            Manager::Launchd { .. } => "launchd",
            Manager::Systemd { user: true } => "systemd (user units)",
            Manager::Systemd { user: false } => "systemd (system units)",
        }
    }
}

impl Installed {
    pub fn start(&self) -> Result<()> {
        self.manager.start().iter().try_for_each(|c| run_command(c))
    }

    pub fn stop(&self) -> Result<()> {
        self.manager.stop().iter().try_for_each(|c| run_command(c))
    }
}

fn unit(kind: &str) -> String {
    format!("{NAME}.{kind}")
}

fn domain() -> String {
    format!("gui/{}", rustix::process::getuid().as_raw())
}

fn service_target() -> String {
    format!("{}/{LABEL}", domain())
}

fn launchd_loaded() -> bool {
    Command::new("launchctl").args(["print", &service_target()]).output().is_ok_and(|o| o.status.success())
}

fn launchctl(rest: &[&str]) -> Vec<String> {
    std::iter::once("launchctl").chain(rest.iter().copied()).map(str::to_owned).collect()
}

fn systemctl(user: bool, rest: &[&str]) -> Vec<String> {
    let scope: &[&str] = if user { &["systemctl", "--user"] } else { &["systemctl"] };
    scope.iter().chain(rest).map(|s| (*s).to_owned()).collect()
}

/// Runs one manager command; its own output goes to the terminal.
pub fn run_command(c: &[String]) -> Result<()> {
    let status = Command::new(&c[0]).args(&c[1..]).status().with_context(|| format!("cannot run {}", c[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", c.join(" "));
    }
    Ok(())
}

/// Where `agentfs install` writes, for each manager: the file that tells an installation.
fn candidates() -> [(PathBuf, Manager); 3] {
    let home = user_home();
    let plist = home.join("Library/LaunchAgents").join(format!("{LABEL}.plist"));
    [
        (plist.clone(), Manager::Launchd { plist }),
        (home.join(".config/systemd/user").join(unit("socket")), Manager::Systemd { user: true }),
        (PathBuf::from("/etc/systemd/system").join(unit("socket")), Manager::Systemd { user: false }),
    ]
}

/// The installation serving `home`, if any: its service names the same `AGENTFS_HOME`.
pub fn find(home: &Home) -> Option<Installed> {
    candidates().into_iter().find_map(|(path, manager)| {
        let declared = match &manager {
            Manager::Launchd { plist } => std::fs::read_to_string(plist).ok().and_then(|t| plist_home(&t)),
            Manager::Systemd { .. } => {
                std::fs::read_to_string(path.with_extension("service")).ok().and_then(|t| unit_home(&t))
            }
        }?;
        (Path::new(&declared) == home.root()).then_some(Installed { path, manager })
    })
}

/// `Environment=AGENTFS_HOME=…` in a service unit.
fn unit_home(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("Environment=AGENTFS_HOME=")).map(str::to_owned)
}

/// The `<string>` after `<key>AGENTFS_HOME</key>` in the plist.
fn plist_home(text: &str) -> Option<String> {
    let after = text.split_once("<key>AGENTFS_HOME</key>")?.1;
    let value = after.split_once("<string>")?.1.split_once("</string>")?.0;
    Some(value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
}

pub fn user_home() -> PathBuf {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_an_installation_serves_is_read_from_its_service() {
        let service = "[Service]\nExecStart=/x router run\nEnvironment=AGENTFS_HOME=/home/dev/.agentfs\n";
        assert_eq!(unit_home(service).as_deref(), Some("/home/dev/.agentfs"));
        let plist = "<key>AGENTFS_HOME</key>\n\t\t<string>/Users/a&amp;b/.agentfs</string>\n";
        assert_eq!(plist_home(plist).as_deref(), Some("/Users/a&b/.agentfs"));
        assert_eq!(unit_home("[Service]\n"), None);
        assert_eq!(plist_home("<key>AGENTFS_HOME</key>"), None);
    }

    #[test]
    fn stopping_stops_the_sockets_too_so_a_request_does_not_start_it_again() {
        let m = Manager::Systemd { user: true };
        assert_eq!(m.stop(), [["systemctl", "--user", "stop", "agentfs-router.socket", "agentfs-router.service"]]);
        assert_eq!(m.start()[0][3..], ["agentfs-router.socket", "agentfs-router.service"]);
    }
}
