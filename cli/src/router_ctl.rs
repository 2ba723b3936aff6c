//! `agentfs router run|start|stop|status`, and starting the router on
//! demand for `wrap`. The running router is found through its management
//! socket; starting means running `agentfs router run` detached, with its
//! output in logs/router.log, and waiting until the API answers — or, when
//! `agentfs install` installed it for this home, asking systemd/launchd.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use agentfs_registry::Home;
use agentfs_router::api::Status;
use agentfs_router::client::{self, ClientError};
use agentfs_router::{Config, pidfile};

use crate::args::{PortArg, RouterCommand, RunArgs};
use crate::installed;
use crate::rotating_log::RotatingLog;
use crate::sys;

const START_TIMEOUT: Duration = Duration::from_secs(15);
/// `logs/router.log` is moved to `router.log.1` past this size, at start
/// and while the router runs.
const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;

pub fn run(cmd: RouterCommand) -> Result<ExitCode> {
    let home = Home::from_env()?;
    match cmd {
        RouterCommand::Run(r) => foreground(home, r),
        RouterCommand::Start(p) => {
            let already = running(&home)?;
            if let Some(s) = already {
                check_port(&s, p.port)?;
                eprintln!("agentfs: router already running: {} (pid {})", s.url, s.pid);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(i) = installed::find(&home) {
                if p.port.is_some() || p.lan || p.no_original_ports {
                    bail!(
                        "the router is installed ({}): its sockets are the installation's; \
                         `agentfs uninstall` first to start it with other flags",
                        i.path.display()
                    );
                }
            }
            let s = start(&home, &p)?;
            eprintln!("agentfs: router started: {} (pid {}, log {})", s.url, s.pid, home.router_log().display());
            Ok(ExitCode::SUCCESS)
        }
        RouterCommand::Stop => stop(&home),
        RouterCommand::Status { json } => status(&home, json),
    }
}

/// The router's status, or `None` when none runs.
pub fn running(home: &Home) -> Result<Option<Status>> {
    match client::status(home) {
        Ok(s) => Ok(Some(s)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The port a router would use (running or not).
pub fn configured_port(home: &Home) -> Result<u16> {
    if let Some(s) = running(home)? {
        return Ok(s.port);
    }
    Ok(Config::from_env(home.clone())?.http_port())
}

/// The running router's port, starting one if needed.
pub fn ensure_running(home: &Home) -> Result<u16> {
    if let Some(s) = running(home)? {
        return Ok(s.port);
    }
    let s = start(home, &PortArg { port: None, lan: false, no_original_ports: false })?;
    eprintln!("agentfs: started the router: {} (pid {})", s.url, s.pid);
    Ok(s.port)
}

fn check_port(s: &Status, wanted: Option<u16>) -> Result<()> {
    match wanted {
        Some(p) if p != s.port => {
            bail!(
                "the router already runs on port {} (pid {}); stop it first (agentfs router stop) to use port {p}",
                s.port,
                s.pid
            )
        }
        _ => Ok(()),
    }
}

fn foreground(home: Home, r: RunArgs) -> Result<ExitCode> {
    let mut config = Config::from_env(home)?;
    #[cfg(target_vendor = "apple")]
    {
        let passed = crate::sys::launchd_sockets(&["http", "https"]).context("cannot take launchd's sockets")?;
        config.passed = agentfs_router::config::Passed::new(passed);
    }
    if r.port.port.is_some() {
        config.port = r.port.port;
    }
    config.lan = r.port.lan;
    if r.port.no_original_ports {
        config.original_ports = false;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match r.log_file {
        Some(path) => logs.with_writer(RotatingLog::open(path, LOG_ROTATE_BYTES)?).with_ansi(false).init(),
        None => {
            use std::io::IsTerminal;
            logs.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init();
        }
    }
    agentfs_router::run(config)?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the router and waits until it answers: through its manager when
/// it is installed for this home, else `agentfs router run` detached.
pub fn start(home: &Home, p: &PortArg) -> Result<Status> {
    home.ensure()?;
    if let Some(i) = installed::find(home) {
        return start_installed(home, &i);
    }
    let log_path = home.router_log();
    rotate(&log_path);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.seek(SeekFrom::End(0)).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the agentfs executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["router", "run", "--log-file"]).arg(&log_path).env(agentfs_registry::env::HOME, home.root());
    // Started from inside a wrapped app, the router must not be an instance
    // itself: its own listener would become a Unix socket.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        use agentfs_registry::env::{DRAIN_TIMEOUT_SECS, HOME, HOSTS_FILE, HTTP_PORT, ORIGINAL_PORTS, SYNC_HOSTS};
        let keep = [HTTP_PORT, DRAIN_TIMEOUT_SECS, HOME, ORIGINAL_PORTS, SYNC_HOSTS, HOSTS_FILE];
        if (k.starts_with("AGENTFS_") && !keep.contains(&k.as_ref()))
            || k == "LD_PRELOAD"
            || k == "DYLD_INSERT_LIBRARIES"
        {
            cmd.env_remove(&key);
        }
    }
    if let Some(port) = p.port {
        cmd.arg("--port").arg(port.to_string());
    }
    if p.lan {
        cmd.arg("--lan");
    }
    if p.no_original_ports {
        cmd.arg("--no-original-ports");
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    sys::detach_on_spawn(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the router")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(s) = running(home)? {
            reap_later(child);
            return Ok(s);
        }
        if let Some(status) = child.try_wait()? {
            if pidfile::running(home).is_none() {
                let why = log_since(&log_path, log_start);
                bail!("the router could not start ({status}): {why}");
            }
            // Another router is starting or draining: wait for an answer.
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the router did not answer within {START_TIMEOUT:?}; see {}", log_path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `systemctl start` / `launchctl kickstart`, then waits for the router's answer.
fn start_installed(home: &Home, i: &installed::Installed) -> Result<Status> {
    i.start().with_context(|| format!("cannot start the installed router ({})", i.path.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(s) = running(home)? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "the installed router ({}) did not answer within {START_TIMEOUT:?}; see {}",
                i.manager.name(),
                home.router_log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps the detached router when it exits while this process still runs.
fn reap_later(mut child: Child) {
    std::thread::spawn(move || child.wait());
}

fn rotate(log: &std::path::Path) {
    if std::fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(log, crate::rotating_log::rotated(log));
    }
}

/// The last error line the router wrote since `start`.
fn log_since(path: &std::path::Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(start));
        let _ = f.take(64 * 1024).read_to_string(&mut text);
    }
    let line = text.lines().rev().find(|l| l.contains("ERROR") || l.contains("error")).or_else(|| text.lines().last());
    line.map_or_else(|| format!("see {}", path.display()), |l| l.trim().trim_start_matches("agentfs: ").to_owned())
}

fn stop(home: &Home) -> Result<ExitCode> {
    if let Some(i) = installed::find(home) {
        // Its sockets stop too: a request must not start it again.
        i.stop().with_context(|| format!("cannot stop the installed router ({})", i.path.display()))?;
        if running(home)?.is_none() && pidfile::running(home).is_none() {
            eprintln!("agentfs: router stopped ({}; `agentfs router start` starts it again)", i.manager.name());
            return Ok(ExitCode::SUCCESS);
        }
    }
    match client::shutdown(home) {
        Ok(()) => {}
        Err(ClientError::NotRunning(_)) => {
            if let Some(pid) = pidfile::terminate(home)? {
                eprintln!("agentfs: the router (pid {pid}) did not answer; sent it SIGTERM");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("agentfs: the router is not running");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while pidfile::running(home).is_some() {
        if Instant::now() > deadline {
            bail!("the router is still draining after 60 s; see {}", home.router_log().display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("agentfs: router stopped");
    Ok(ExitCode::SUCCESS)
}

fn status(home: &Home, json: bool) -> Result<ExitCode> {
    let Some(s) = running(home)? else {
        if json {
            println!("{}", serde_json::json!({"v": 1, "running": false}));
        } else {
            println!("router: not running (start it with `agentfs router start`)");
        }
        return Ok(ExitCode::from(3));
    };
    if json {
        let mut v = serde_json::to_value(&s).map_err(|e| anyhow!(e))?;
        v["running"] = true.into();
        v["v"] = 1.into();
        println!("{v}");
    } else {
        let from = if s.sockets == "bound" { String::new() } else { format!(", sockets passed by {}", s.sockets) };
        println!("router: running, pid {}, {} ({}{from})", s.pid, s.url, s.listening.join(", "));
        println!("routes: {} apps, {} listeners, {} static", s.apps, s.listeners, s.static_routes);
        println!("home:   {}", s.home.display());
    }
    Ok(ExitCode::SUCCESS)
}
