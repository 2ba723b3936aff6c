//! `agentfs install [--ports 80,443] [--dry-run] [--system]` / `agentfs
//! uninstall`: the router started by the system with its listening sockets
//! already bound on loopback, so URLs carry no port and nothing runs as root.
//! Linux: systemd units — user units (`~/.config/systemd/user`) when every
//! port is at least `net.ipv4.ip_unprivileged_port_start`, else system units
//! (`/etc/systemd/system`, written only with `--system` as root) whose socket
//! hands the sockets to a service running as the user. macOS: a LaunchAgent
//! plist with `Sockets` on 127.0.0.1 and ::1, which `agentfs router run`
//! takes with `launch_activate_socket` (`sys::launchd_sockets`); it has not
//! been tried on a Mac yet, so there only `--dry-run` is enabled. The
//! router serves on whatever sockets it is passed (`router/src/listen.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use agentfs_registry::Home;

use crate::args::InstallArgs;
use crate::installed::{LABEL, Manager, NAME, run_command, user_home};

/// What an installation is: where the router program is, the home, the ports.
pub struct Plan {
    pub exe: PathBuf,
    pub home: PathBuf,
    pub ports: Vec<u16>,
    /// The user the router runs as (system units).
    pub user: String,
}

/// One file to write.
pub struct Unit {
    pub path: PathBuf,
    pub text: String,
}

pub fn run(args: &InstallArgs, remove: bool) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let plan = Plan {
        exe: std::env::current_exe().context("cannot find the agentfs executable")?,
        home: home.root().to_owned(),
        ports: args.ports.clone(),
        user: std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "root".into()),
    };
    let (units, loader, needs_system) = files(&plan, args.system);
    let commands = if remove { loader.unload() } else { loader.load() };
    if args.dry_run || (needs_system && !args.system) {
        for u in &units {
            println!("# {} {}\n{}", if remove { "would remove" } else { "would write" }, u.path.display(), u.text);
        }
        for c in &commands {
            println!("# would run: {}", c.join(" "));
        }
    }
    if needs_system && !args.system {
        bail!(
            "ports {} are below net.ipv4.ip_unprivileged_port_start ({}): a user unit cannot bind them; \
             `sudo -E agentfs {}install --system` writes (or removes) the system units above, whose sockets go to a router running as {}",
            list(&plan.ports),
            unprivileged_port_start(),
            if remove { "un" } else { "" },
            plan.user
        );
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if cfg!(target_vendor = "apple") {
        bail!(
            "agentfs install is not enabled on macOS yet: the LaunchAgent has not been tried on a Mac; \
             `agentfs install --dry-run` shows the plist it will write"
        );
    }
    if remove { uninstall(&units, &commands) } else { install(&units, &commands) }
}

/// The files for this platform, how they are loaded, and whether they are
/// system units (the ports are privileged, or `--system`).
fn files(plan: &Plan, system: bool) -> (Vec<Unit>, Manager, bool) {
    if cfg!(target_vendor = "apple") {
        let path = user_home().join("Library/LaunchAgents").join(format!("{LABEL}.plist"));
        return (vec![Unit { path: path.clone(), text: plist(plan) }], Manager::Launchd { plist: path }, false);
    }
    let unprivileged = unprivileged_port_start();
    let user_units = plan.ports.iter().all(|p| u32::from(*p) >= unprivileged) && !system;
    let dir = match user_units {
        true => user_home().join(".config/systemd/user"),
        false => PathBuf::from("/etc/systemd/system"),
    };
    let (socket, service) = systemd_units(plan, !user_units);
    let units = vec![
        Unit { path: dir.join(format!("{NAME}.socket")), text: socket },
        Unit { path: dir.join(format!("{NAME}.service")), text: service },
    ];
    (units, Manager::Systemd { user: user_units }, !user_units)
}

fn list(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// Linux's lowest port an unprivileged process may bind (1024 if unknown).
fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// The `.socket` and `.service` units; `system`: the service runs as the user.
pub fn systemd_units(plan: &Plan, system: bool) -> (String, String) {
    let mut socket =
        String::from("[Unit]\nDescription=agentfs router: its listening sockets, on loopback only\n\n[Socket]\n");
    for p in &plan.ports {
        socket.push_str(&format!("ListenStream=127.0.0.1:{p}\nListenStream=[::1]:{p}\n"));
    }
    socket.push_str("BindIPv6Only=ipv6-only\nNoDelay=true\n\n[Install]\nWantedBy=sockets.target\n");
    let log = plan.home.join("logs/router.log");
    let mut service = format!(
        "[Unit]\nDescription=agentfs router\nRequires={NAME}.socket\nAfter={NAME}.socket\n\n[Service]\n\
         ExecStart={} router run --log-file {}\nEnvironment=AGENTFS_HOME={}\n",
        plan.exe.display(),
        log.display(),
        plan.home.display()
    );
    if system {
        service.push_str(&format!("User={}\n", plan.user));
    }
    service.push_str(&format!(
        "Restart=on-failure\n\n[Install]\nWantedBy={}\n",
        if system { "multi-user.target" } else { "default.target" }
    ));
    (socket, service)
}

/// The LaunchAgent: `Sockets` named `http` (the first port) and `https` (a second), each on 127.0.0.1 and ::1.
pub fn plist(plan: &Plan) -> String {
    let log = plan.home.join("logs/router.log").display().to_string();
    let mut sockets = String::new();
    for (name, port) in ["http", "https"].iter().zip(&plan.ports) {
        sockets.push_str(&format!("\t\t<key>{name}</key>\n\t\t<array>\n"));
        for (node, family) in [("127.0.0.1", "IPv4"), ("::1", "IPv6")] {
            sockets.push_str(&format!(
                "\t\t\t<dict>\n\t\t\t\t<key>SockNodeName</key>\n\t\t\t\t<string>{node}</string>\n\
                 \t\t\t\t<key>SockServiceName</key>\n\t\t\t\t<string>{port}</string>\n\
                 \t\t\t\t<key>SockFamily</key>\n\t\t\t\t<string>{family}</string>\n\t\t\t</dict>\n"
            ));
        }
        sockets.push_str("\t\t</array>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n\t<key>Label</key>\n\t<string>{LABEL}</string>\n\
         \t<key>ProgramArguments</key>\n\t<array>\n\t\t<string>{}</string>\n\t\t<string>router</string>\n\
         \t\t<string>run</string>\n\t</array>\n\t<key>EnvironmentVariables</key>\n\t<dict>\n\
         \t\t<key>AGENTFS_HOME</key>\n\t\t<string>{}</string>\n\t</dict>\n\t<key>Sockets</key>\n\t<dict>\n{sockets}\t</dict>\n\
         \t<key>RunAtLoad</key>\n\t<true/>\n\t<key>StandardOutPath</key>\n\t<string>{log}</string>\n\
         \t<key>StandardErrorPath</key>\n\t<string>{log}</string>\n</dict>\n</plist>\n",
        xml(&plan.exe.display().to_string()),
        xml(&plan.home.display().to_string()),
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn install(units: &[Unit], commands: &[Vec<String>]) -> Result<ExitCode> {
    for u in units {
        if let Some(dir) = u.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        agentfs_registry::atomic::write(&u.path, u.text.as_bytes())
            .with_context(|| format!("cannot write {}", u.path.display()))?;
        set_mode(&u.path, 0o644)?;
        eprintln!("agentfs: wrote {}", u.path.display());
    }
    commands.iter().try_for_each(|c| run_command(c))?;
    eprintln!("agentfs: installed; the router now starts with the first request, on port(s) the system holds for it");
    Ok(ExitCode::SUCCESS)
}

fn uninstall(units: &[Unit], unload: &[Vec<String>]) -> Result<ExitCode> {
    for c in unload {
        if let Err(e) = run_command(c) {
            eprintln!("agentfs: {e:#} (going on)");
        }
    }
    for u in units.iter().filter(|u| u.path.exists()) {
        std::fs::remove_file(&u.path).with_context(|| format!("cannot remove {}", u.path.display()))?;
        eprintln!("agentfs: removed {}", u.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            exe: "/usr/local/bin/agentfs".into(),
            home: "/home/dev/.agentfs".into(),
            ports: vec![80, 443],
            user: "dev".into(),
        }
    }

    /// Compares with the golden file; `UPDATE_GOLDEN=1` rewrites it instead (then review the diff).
    fn golden(name: &str, expected: &str, got: &str) {
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden").join(name);
            std::fs::write(path, got).unwrap();
            return;
        }
        assert_eq!(got, expected, "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)");
    }

    #[test]
    fn the_launch_agent_binds_loopback_only() {
        let text = plist(&plan());
        golden("dev.agentfs.router.plist", include_str!("../../tests/fixtures/golden/dev.agentfs.router.plist"), &text);
        assert!(!text.contains("0.0.0.0") && text.matches("<string>127.0.0.1</string>").count() == 2);
    }

    #[test]
    fn systemd_units_for_the_user_and_for_the_system() {
        let (socket, service) = systemd_units(&plan(), false);
        golden("agentfs-router.socket", include_str!("../../tests/fixtures/golden/agentfs-router.socket"), &socket);
        let user = include_str!("../../tests/fixtures/golden/agentfs-router.user.service");
        golden("agentfs-router.user.service", user, &service);
        let (_, system) = systemd_units(&plan(), true);
        let expected = include_str!("../../tests/fixtures/golden/agentfs-router.system.service");
        golden("agentfs-router.system.service", expected, &system);
        assert!(system.contains("User=dev\n") && !service.contains("User="));
        assert!(socket.contains("ListenStream=127.0.0.1:80\nListenStream=[::1]:80\n") && !socket.contains("0.0.0.0"));
    }
}
