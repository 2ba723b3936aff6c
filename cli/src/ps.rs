//! `agentfs ps`: what runs, read straight from run/ (works with the router
//! stopped). One row per listening socket; `--json` for agents.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use agentfs_registry::names::{hostname, url};
use agentfs_registry::scan::{self, Listener};
use agentfs_registry::{Home, Target, liveness, model};

use crate::router_ctl;

/// One row of `agentfs ps --json`.
#[derive(Debug, Serialize)]
pub struct Row {
    pub app: String,
    pub instance: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub url: String,
    /// The Unix socket, or `tcp:<host>:<port>` for a PORT-fallback route.
    pub socket: String,
    pub started_at_ms: u64,
    /// This instance answers at `<app>.localhost`.
    pub default: bool,
    /// The instance's primary port (the one its plain URL reaches).
    pub primary: bool,
    pub wrapper_pid: Option<u32>,
    pub cmd: Vec<String>,
}

pub fn run(json: bool) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let snap = scan::scan(&home.run_dir()).with_context(|| format!("cannot read {}", home.run_dir().display()))?;
    let router_port = router_ctl::configured_port(&home)?;
    let starting: Vec<_> = snap
        .wrappers
        .iter()
        .filter(|w| liveness::pid_alive(w.wrapper_pid))
        .filter(|w| !snap.listeners.iter().any(|l| l.app() == &w.app && l.instance() == &w.instance && l.maybe_alive()))
        .collect();
    let rows = rows(snap.listeners.into_iter().filter(Listener::maybe_alive), router_port);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() && starting.is_empty() {
        println!("nothing runs; start an app with `agentfs wrap -- <command>`");
        return Ok(ExitCode::SUCCESS);
    }
    let now = liveness::now_ms();
    let mut table = vec![["APP", "INSTANCE", "PORT", "PID", "UPTIME", "URL"].map(String::from)];
    for r in &rows {
        let pid = r.pid.map_or_else(|| "-".into(), |p| p.to_string());
        let mark = if r.default && r.primary { " (default)" } else { "" };
        table.push([
            r.app.clone(),
            r.instance.clone(),
            r.port.to_string(),
            pid,
            uptime(now, r.started_at_ms),
            format!("{}{mark}", r.url),
        ]);
    }
    for w in starting {
        let host = hostname(&w.app, Some(&w.instance));
        let u = format!("{} (starting)", url(&host, router_port));
        table.push([
            w.app.to_string(),
            w.instance.to_string(),
            "-".into(),
            w.wrapper_pid.to_string(),
            uptime(now, w.started_at_ms),
            u,
        ]);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// Rows in app → instance (default first) → port order.
pub fn rows(listeners: impl IntoIterator<Item = Listener>, router_port: u16) -> Vec<Row> {
    let mut rows = Vec::new();
    for app in model::group(listeners).into_values() {
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
                        port: *port,
                        pid: l.pid,
                        url: url(&host, router_port),
                        socket: match &l.target {
                            Target::Unix(p) => p.display().to_string(),
                            t @ Target::Tcp { .. } => format!("tcp:{t}"),
                        },
                        started_at_ms: l.started_at_ms,
                        default: i == 0,
                        primary,
                        wrapper_pid: sc.and_then(|s| s.wrapper_pid),
                        cmd: sc.map(|s| s.cmd.clone()).unwrap_or_default(),
                    });
                }
            }
        }
    }
    rows
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

fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0usize; 6];
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
