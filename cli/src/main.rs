//! `agentfs`: run several copies of one web app at once, each at its own
//! `http://<instance>.<app>.localhost`, with no change to the app.
//!
//! # Layout
//! - `args` — the command line (clap), with every command's help and examples.
//! - `wrap` — `agentfs wrap -- CMD`, with `identity` (app/instance names),
//!   `shim` (the embedded shim), `program` (can the shim enter CMD?), `launch` (SIP-proof start),
//!   `tree` (the command's process group and descendants, stopped together), `terminal`
//!   (the tty handed to that group and back), `signals` (forwarding), `live_record` (the wrapper
//!   record, rewritten with reaped descendants' exits and the front port), `front` (the primary port, the banner), `watch` (banner, PORT fallback route),
//!   `unseen` (TCP listeners of the tree that the shim cannot enter, routed over TCP),
//!   `tee` (`wrap --log`: the output also into the instance's log, through a pty at a terminal).
//! - `ps` (with `crashed`: which instances count as crashed), `url` (one instance's URL, from `ps`'s rows), `open` (that URL, or the dashboard, in the browser), `route`, `router_ctl`, `doctor` (with `doctor_script`: the static and Go programs a script names) — the other commands.
//! - `up` — `agentfs up/down/restart`: background instances, each run by a `supervise` process (hidden
//!   `agentfs supervise`) that restarts it by policy (`holding` its name in run/ between runs) and copies its output to `applog` (the timestamped
//!   `logs/<app>.<instance>.log`, a `rotating_log`); `logs` reads it.
//! - `mcp` — `agentfs mcp`: the MCP server on stdio; each tool runs the command it stands for.
//! - `install` — `agentfs install/uninstall`: systemd units or a LaunchAgent that start the router with its sockets.
//! - `installed` — the installation serving this home, and starting/stopping the router through its manager.
//! - `hosts` — `agentfs hosts sync|clean|status`: the routed hosts in a marked block of /etc/hosts.
//! - `trust` — `agentfs trust [--status|--remove]`: the local CA in the user's stores (`trust_nss`: NSS databases
//!   with certutil, `trust_linux`: those and the distribution's system store; `trust_macos`: the keychains).
//! - `sys` — the system calls std lacks (kill, setsid, the parent-death signal, tcsetpgrp, child pids).
#![deny(unsafe_code)]

mod applog;
mod args;
mod crashed;
mod doctor;
mod doctor_macos;
mod doctor_script;
mod front;
mod holding;
mod hosts;
mod identity;
mod install;
mod installed;
mod intercept;
mod launch;
mod live_record;
mod logs;
mod mcp;
mod open;
mod program;
mod ps;
mod rotating_log;
mod route;
mod router_ctl;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
mod seccomp_proc;
mod shim;
mod signals;
mod supervise;
mod sys;
#[cfg(target_os = "linux")]
mod sys_seccomp;
mod tee;
mod terminal;
mod tree;
mod trust;
#[cfg(not(target_os = "macos"))]
mod trust_linux;
#[cfg(target_os = "macos")]
mod trust_macos;
#[cfg(not(target_os = "macos"))]
mod trust_nss;
mod unseen;
mod up;
mod url;
mod watch;
mod wrap;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    if prints_only(&cli.command) {
        sys::default_sigpipe();
    }
    let result = match cli.command {
        Command::Wrap(w) => wrap::run(w),
        Command::Up(u) => up::up(u),
        Command::Supervise(u) => supervise::run(u),
        Command::Down { target } => up::down(target),
        Command::Restart { target, json, wait } => up::restart(target, json, wait),
        Command::Logs { target, follow, lines } => logs::run(target, follow, lines),
        Command::Mcp => mcp::run(),
        Command::Ps { json } => ps::run(json),
        Command::Url { target, port, json } => url::run(target, port, json),
        Command::Open { target } => open::run(target),
        Command::Route { host, target, allow_remote, json } => route::route(&host, &target, allow_remote, json),
        Command::Unroute { host } => route::unroute(&host),
        Command::Router(r) => router_ctl::run(r),
        Command::Doctor { command, json } => doctor::run(&command, json),
        Command::Trust(t) => trust::run(&t),
        Command::Hosts(h) => hosts::run(h),
        Command::Install(i) => install::run(&i, false),
        Command::Uninstall(i) => install::run(&i, true),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "agentfs", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("agentfs: {}", one_line(&error_text(&e)));
        ExitCode::FAILURE
    })
}

/// Commands that only print (no server, no process tree): a closed pipe ends them quietly.
fn prints_only(cmd: &Command) -> bool {
    use args::RouterCommand;
    matches!(
        cmd,
        Command::Ps { .. }
            | Command::Url { .. }
            | Command::Logs { .. }
            | Command::Doctor { .. }
            | Command::Install(_)
            | Command::Uninstall(_)
            | Command::Hosts(_)
            | Command::Completions { .. }
            | Command::Router(RouterCommand::Status { .. })
    )
}

/// The error and its causes, each cause once: errors that already show
/// their source (`cannot create X: <os error>`) are not followed by it again.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Help and version as clap prints them; usage errors as one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let problem: Vec<&str> =
        text.lines().take_while(|l| !l.trim().is_empty()).map(|l| l.trim().trim_start_matches("error: ")).collect();
    let usage = text.lines().find_map(|l| l.strip_prefix("Usage: ")).unwrap_or("agentfs --help");
    eprintln!("agentfs: {} (usage: {usage})", problem.join(" "));
    ExitCode::from(2)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_not_repeated() {
        let os = std::io::Error::from_raw_os_error(20);
        let shown = format!("cannot create /x: {os}");
        let e = anyhow::Error::new(os).context(shown.clone()).context("wrapping");
        assert_eq!(error_text(&e), format!("wrapping: {shown}"));
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }
}
