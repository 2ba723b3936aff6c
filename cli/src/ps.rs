//! `agentfs ps`: what runs, read straight from run/ (works with the router
//! stopped). One row per listening socket, and one per instance that is
//! starting (its wrapper runs, nothing listens yet), each with its state;
//! `--json` for agents. Without a router, it also sweeps dead wrappers.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use agentfs_registry::names::{Origin, hostname};
use agentfs_registry::record::WrapperRecord;
use agentfs_registry::scan::{self, Listener};
use agentfs_registry::service::{self, Phase};
use agentfs_registry::{Home, Target, liveness, model, reap, trusted};

use crate::{crashed, router_ctl};

/// What an instance is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its wrapper runs and nothing of it listens yet.
    Starting,
    /// A listener whose process is alive (or unknown).
    Live,
    /// It listened, and its listening process crashed while its wrapper
    /// runs (as the router judges it, see `crashed`).
    Crashed,
    /// A background instance whose command failed; its supervisor starts it again soon.
    Restarting,
    /// A background instance that ended and is not restarted (`exit` says how).
    Exited,
}

/// One row of `agentfs ps --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The schema version of a row (1).
    pub v: u32,
    pub app: String,
    pub instance: String,
    pub state: State,
    /// The port listened on; `null` while starting.
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub url: String,
    /// The Unix socket, or `tcp:<host>:<port>` for a PORT-fallback route;
    /// `null` while starting.
    pub socket: Option<String>,
    pub started_at_ms: u64,
    /// This instance answers at `<app>.localhost`.
    pub default: bool,
    /// The instance's primary port (the one its plain URL reaches).
    pub primary: bool,
    pub wrapper_pid: Option<u32>,
    pub cmd: Vec<String>,
    /// How the crashed process ended: `pid 42, killed by signal 9 (SIGKILL)`;
    /// only for `crashed` and `exited` rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// A background instance (`agentfs up`): how many times its command was
    /// started again; absent for a foreground `wrap`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// A background instance: how its command's last run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// `localhost:<port>` outside the instances (while the router runs): whether
    /// this row's port is mirrored there for this instance, and why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_port: Option<OriginalPort>,
}

/// What `localhost:<port>` reaches, for one row.
#[derive(Clone, Debug, Serialize)]
pub struct OriginalPort {
    pub port: u16,
    /// `localhost:<port>` reaches this instance.
    pub mirrored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub fn run(json: bool) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let (rows, notes) = collect(&home)?;
    for note in notes {
        eprintln!("agentfs: {note}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("nothing runs; start an app with `agentfs wrap -- <command>`");
        return Ok(ExitCode::SUCCESS);
    }
    let now = liveness::now_ms();
    let mut table = vec![["APP", "INSTANCE", "STATE", "PORT", "PID", "UPTIME", "URL", "LOCALHOST"].map(String::from)];
    let dash = |v: Option<u32>| v.map_or_else(|| "-".into(), |p| p.to_string());
    for r in &rows {
        let mark = if r.default && r.primary { " (default)" } else { "" };
        table.push([
            r.app.clone(),
            r.instance.clone(),
            state_cell(r)?,
            dash(r.port.map(u32::from)),
            dash(r.pid.or(r.wrapper_pid.filter(|_| r.state != State::Live))),
            uptime(now, r.started_at_ms),
            r.exit.as_ref().map_or_else(|| format!("{}{mark}", r.url), |e| format!("{} (exited: {e})", r.url)),
            original_cell(r.original_port.as_ref()),
        ]);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// Every row `ps` shows, and the notes of the sweep of dead wrappers'
/// files (done only while no router does it).
pub fn collect(home: &Home) -> Result<(Vec<Row>, Vec<String>)> {
    let notes = if router_ctl::running(home)?.is_none() {
        reap::sweep(&home.run_dir()).with_context(|| format!("cannot sweep {}", home.run_dir().display()))?
    } else {
        Vec::new()
    };
    let snap = scan::scan(&home.run_dir()).with_context(|| format!("cannot read {}", home.run_dir().display()))?;
    let origin = trusted::origin(home, router_ctl::configured_port(home)?);
    let starting: Vec<_> = snap
        .wrappers
        .iter()
        .filter(|w| liveness::pid_alive(w.wrapper_pid))
        .filter(|w| !snap.listeners.iter().any(|l| l.app() == &w.app && l.instance() == &w.instance && l.maybe_alive()))
        .collect();
    let crashes = crashed::find(home, &starting);
    let mut rows = rows(snap.listeners.into_iter().filter(Listener::maybe_alive), &snap.wrappers, origin);
    rows.extend(starting.iter().map(|w| starting_row(w, origin, &crashes)));
    add_original_ports(home, &mut rows);
    add_services(home, &mut rows, origin);
    Ok((rows, notes))
}

/// Rows in app → instance (default first) → port order.
pub fn rows(listeners: impl IntoIterator<Item = Listener>, wrappers: &[WrapperRecord], origin: Origin) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut apps = model::group(listeners);
    model::choose_primary(&mut apps, wrappers);
    for app in apps.into_values() {
        for (i, inst) in app.instances.iter().enumerate() {
            for (port, replicas) in &inst.ports {
                let primary = *port == inst.primary_port;
                let host = hostname(&inst.app, Some(&inst.instance));
                let host = if primary { host } else { format!("{port}.{host}") };
                for l in replicas {
                    let sc = l.sidecar.as_ref();
                    rows.push(Row {
                        app: inst.app.to_string(),
                        instance: inst.instance.to_string(),
                        state: State::Live,
                        port: Some(*port),
                        pid: l.pid,
                        url: origin.url(&host),
                        socket: Some(match &l.target {
                            Target::Unix(p) => p.display().to_string(),
                            t @ Target::Tcp { .. } => format!("tcp:{t}"),
                        }),
                        started_at_ms: l.started_at_ms,
                        default: i == 0,
                        primary,
                        wrapper_pid: sc.and_then(|s| s.wrapper_pid),
                        cmd: sc.map(|s| s.cmd.clone()).unwrap_or_default(),
                        exit: None,
                        restarts: None,
                        last_exit: None,
                        original_port: None,
                        v: ROW_VERSION,
                    });
                }
            }
        }
    }
    rows
}

/// Fills in each converted row's `original_port` from the running router
/// (which alone knows what it could bind); nothing without a router.
fn add_original_ports(home: &Home, rows: &mut [Row]) {
    let Ok(view) = agentfs_router::client::routes(home) else { return };
    for r in rows.iter_mut().filter(|r| r.socket.as_deref().is_some_and(|s| !s.starts_with("tcp:"))) {
        let Some(o) = view.original_ports.iter().find(|o| Some(o.port) == r.port) else { continue };
        let me = format!("{}.{}", r.instance, r.app);
        let (mirrored, reason) = match &o.reason {
            Some(why) => (false, Some(why.clone())),
            None if o.answers == me => (true, None),
            None => (false, Some(format!("localhost:{} answers {} (it took the port first)", o.port, o.answers))),
        };
        r.original_port = Some(OriginalPort { port: o.port, mirrored, reason });
    }
}

fn original_cell(o: Option<&OriginalPort>) -> String {
    match o {
        Some(OriginalPort { port, mirrored: true, .. }) => format!("localhost:{port}"),
        Some(OriginalPort { reason: Some(why), .. }) => format!("- ({why})"),
        _ => "-".to_owned(),
    }
}

/// The row of an instance whose wrapper runs and that listens nowhere:
/// starting, or crashed when `crashes` names its wrapper.
fn starting_row(w: &WrapperRecord, origin: Origin, crashes: &crashed::Crashes) -> Row {
    let exit = crashes.get(&w.wrapper_pid).cloned();
    Row {
        app: w.app.to_string(),
        instance: w.instance.to_string(),
        state: if exit.is_some() { State::Crashed } else { State::Starting },
        port: None,
        pid: None,
        url: origin.url(&hostname(&w.app, Some(&w.instance))),
        socket: None,
        started_at_ms: w.started_at_ms,
        default: false,
        primary: false,
        wrapper_pid: Some(w.wrapper_pid),
        cmd: w.cmd.clone(),
        exit,
        restarts: None,
        last_exit: None,
        original_port: None,
        v: ROW_VERSION,
    }
}

/// The schema version of `ps --json` rows (also `url --json`, `up --json`).
pub const ROW_VERSION: u32 = 1;

/// Marks the rows of background instances with their restarts and last
/// exit, and adds a row for each one that does not run now (restarting
/// after a failure, or ended).
fn add_services(home: &Home, rows: &mut Vec<Row>, origin: Origin) {
    for s in service::list(home) {
        let instance = &s.instance;
        let mut mine =
            rows.iter_mut().filter(|r| r.app == s.app.as_str() && r.instance == instance.as_str()).peekable();
        if mine.peek().is_some() {
            for r in mine {
                r.restarts = Some(s.restarts);
                r.last_exit.clone_from(&s.last_exit);
            }
            continue;
        }
        let (state, exit) = match s.phase {
            Phase::Backoff if s.alive() => (State::Restarting, s.last_exit.clone()),
            Phase::Running | Phase::Stopping if s.alive() => continue,
            Phase::Failed => (State::Exited, s.reason.clone()),
            _ => (State::Exited, s.last_exit.clone().or_else(|| Some("its supervisor was killed".into()))),
        };
        rows.push(Row {
            v: ROW_VERSION,
            app: s.app.to_string(),
            instance: instance.to_string(),
            state,
            port: None,
            pid: None,
            url: origin.url(&hostname(&s.app, Some(instance))),
            socket: None,
            started_at_ms: s.run_started_at_ms,
            default: false,
            primary: false,
            wrapper_pid: None,
            cmd: s.cmd.clone(),
            exit,
            restarts: Some(s.restarts),
            last_exit: s.last_exit.clone(),
            original_port: None,
        });
    }
}

/// `live`, `live (2 restarts, last: exit status 1)`.
fn state_cell(r: &Row) -> Result<String> {
    let state = serde_json::to_value(r.state)?.as_str().unwrap_or_default().to_owned();
    let last = r.last_exit.as_ref().filter(|_| r.state != State::Exited).map(|e| format!(", last: {e}"));
    Ok(match r.restarts {
        Some(1) => format!("{state} (1 restart{})", last.unwrap_or_default()),
        Some(n) if n > 1 => format!("{state} ({n} restarts{})", last.unwrap_or_default()),
        _ => state,
    })
}

fn uptime(now: u64, since: u64) -> String {
    let s = now.saturating_sub(since) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn print_table(rows: &[[String; 8]]) {
    let mut widths = [0usize; 8];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes() {
        assert_eq!(uptime(10_000, 5_000), "5s");
        assert_eq!(uptime(200_000, 0), "3m");
        assert_eq!(uptime(7_200_000, 0), "2h");
        assert_eq!(uptime(0, 5), "0s");
    }
}
