//! `agentfs up`, `down` and `restart`: background instances for people and
//! agents who cannot keep a terminal on `wrap`. `up` starts a supervisor
//! (see `supervise`) in a session of its own and waits, reading its record
//! and `ps`'s rows, until the instance listens (then prints its URL) or
//! fails (then prints the log's last lines). `down` stops an instance
//! however it was started; `restart` asks a supervisor to start its command
//! again.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use agentfs_registry::service::{self, Phase, ServiceRecord};
use agentfs_registry::{Home, Label, liveness, scan};

use crate::args::UpArgs;
use crate::ps::{self, Row, State};
use crate::url::{self, UrlTarget};
use crate::{applog, front, identity, router_ctl, sys, tree};

const TICK: Duration = Duration::from_millis(25);
/// Lines of the log shown when an instance fails to start.
const TAIL: usize = 12;

pub fn up(args: UpArgs) -> Result<ExitCode> {
    front::chosen_port(args.port.as_deref())?;
    applog::max_bytes()?;
    tree::grace()?;
    let home = Home::from_env()?;
    home.ensure()?;
    let identity::Here { app, wanted, .. } = identity::here(args.name.as_deref(), args.instance.as_deref())?;
    let cmd: Vec<String> = args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(same) = service::of(&home, &app, Some(&wanted)).into_iter().find(|r| r.alive() && r.cmd == cmd) {
        eprintln!(
            "agentfs: {} already runs in the background (pid {}); `agentfs restart` starts it again",
            same.name(),
            same.pid
        );
        return report(&home, &same, (0, Instant::now() + Duration::from_secs(args.wait)), args.json);
    }
    router_ctl::ensure_running(&home)?;
    let child = spawn_supervisor()?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let rec = first_record(&home, child, deadline)?;
    if rec.instance != wanted {
        eprintln!("agentfs: {app} ({wanted}) is already running; this one is {}", rec.instance);
    }
    report(&home, &rec, (0, deadline), args.json)
}

/// `agentfs supervise` with `up`'s arguments, detached: its own session,
/// no terminal, stdio on /dev/null (its output goes to the log).
fn spawn_supervisor() -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the agentfs executable")?;
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    match argv.first_mut() {
        Some(first) if first == "up" => *first = service::SUPERVISOR_ARG.into(),
        _ => bail!("cannot find `up` in the command line"),
    }
    let mut cmd = Command::new(exe);
    cmd.args(argv).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    sys::detach_on_spawn(&mut cmd);
    cmd.spawn().context("cannot start the supervisor")
}

/// The supervisor's record, once written.
fn first_record(home: &Home, mut child: Child, deadline: Instant) -> Result<ServiceRecord> {
    let path = service::path(home, child.id());
    loop {
        if let Ok(rec) = service::read(&path) {
            std::thread::spawn(move || child.wait());
            return Ok(rec);
        }
        if let Ok(Some(status)) = child.try_wait() {
            if let Ok(rec) = service::read(&path) {
                return Ok(rec);
            }
            bail!("the supervisor ended at once ({status}); run `agentfs wrap` in the foreground to see why");
        }
        if Instant::now() > deadline {
            bail!("the supervisor (pid {}) did not start the command in time; see `agentfs ps`", child.id());
        }
        std::thread::sleep(TICK);
    }
}

/// Waits until a run of `rec`'s command started at or after `since` (ms)
/// listens and prints its URL (or row); on failure prints why and the
/// log's last lines, and returns 1.
fn report(home: &Home, rec: &ServiceRecord, (since, deadline): (u64, Instant), json: bool) -> Result<ExitCode> {
    match wait_listening(home, rec.pid, since, deadline) {
        Ok(row) => {
            print_row(&row, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("agentfs: {why}");
            if let Some((app, instance)) = &why.log {
                print_tail(home, app, instance);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_row(row: &Row, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(row)?);
    } else {
        println!("{}", row.url);
    }
    Ok(())
}

/// Why an instance did not come up.
#[derive(Debug)]
struct NotUp {
    /// The instance whose log to show.
    log: Option<(Label, Label)>,
    text: String,
}

impl std::fmt::Display for NotUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Polls the supervisor's record and `ps`'s rows until a run started at or
/// after `since` listens.
fn wait_listening(home: &Home, pid: u32, since: u64, deadline: Instant) -> Result<Row, NotUp> {
    loop {
        let rec = service::read(&service::path(home, pid));
        let Ok(rec) = rec else {
            return Err(NotUp { log: None, text: "it was stopped before it listened".into() });
        };
        let not_up = |text: String| NotUp { log: Some((rec.app.clone(), rec.instance.clone())), text };
        let name = rec.name();
        let logs = format!("agentfs logs {name}");
        match rec.phase {
            Phase::Failed => return Err(not_up(format!("{name} failed: {}", rec.reason.clone().unwrap_or_default()))),
            Phase::Exited => {
                let exit = rec.last_exit.clone().unwrap_or_else(|| "exited".into());
                return Err(not_up(format!("{name} ended ({exit}) before it listened; its last lines ({logs}):")));
            }
            _ if !rec.alive() => return Err(not_up(format!("the supervisor of {name} is gone; see {logs}"))),
            _ => {}
        }
        if rec.run_started_at_ms >= since {
            if let Some(row) = listening_row(home, &rec.app, &rec.instance) {
                return Ok(row);
            }
        }
        if Instant::now() > deadline {
            return Err(not_up(format!(
                "{name} has not listened yet; it keeps starting in the background (see {logs}; stop it with agentfs down {name})"
            )));
        }
        std::thread::sleep(TICK);
    }
}

fn listening_row(home: &Home, app: &Label, instance: &Label) -> Option<Row> {
    let (rows, _) = ps::collect(home).ok()?;
    let target = UrlTarget { app: app.clone(), instance: Some(instance.clone()) };
    let row = url::pick(&rows, &target, None).ok()?;
    (row.state == State::Live).then(|| row.clone())
}

fn print_tail(home: &Home, app: &Label, instance: &Label) {
    for line in crate::logs::tail(&home.app_log(app, instance), TAIL).unwrap_or_default() {
        eprintln!("  | {line}");
    }
}

/// The (app, instance) TARGET names: `instance.app`; an app's default (or
/// only background) instance; or, without TARGET, the current directory's.
pub fn resolve(home: &Home, target: Option<UrlTarget>) -> Result<(Label, Label)> {
    let target = match target {
        Some(t) => t,
        None => url::current_instance()?,
    };
    if let Some(i) = target.instance {
        return Ok((target.app, i));
    }
    let (rows, _) = ps::collect(home)?;
    let of_app = || rows.iter().filter(|r| r.app == target.app.as_str());
    if let Some(r) = of_app().find(|r| r.default).or_else(|| of_app().next()) {
        return Ok((target.app.clone(), Label::parse(&r.instance).map_err(|e| anyhow!("{e}"))?));
    }
    let services = service::of(home, &target.app, None);
    match services.last().map(|s| s.instance.clone()) {
        Some(i) => Ok((target.app, i)),
        None => bail!("no instance of {} runs; see `agentfs ps`", target.app),
    }
}

pub fn down(target: Option<UrlTarget>) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let (app, instance) = resolve(&home, target)?;
    let name = format!("{instance}.{app}");
    let (waiting, dead) = service::signal_stop(&home, &app, &instance)
        .with_context(|| format!("cannot read {}", home.run_dir().display()))?;
    for s in &dead {
        service::remove(&home, s).with_context(|| format!("cannot remove {}", s.path(&home).display()))?;
    }
    if waiting.is_empty() && dead.is_empty() {
        bail!("{name} does not run; see `agentfs ps`");
    }
    let deadline = Instant::now() + tree::grace()? + Duration::from_secs(10);
    while waiting.iter().any(|p| liveness::pid_alive(*p)) {
        if Instant::now() > deadline {
            bail!("{name} did not stop within {:?} (pids {waiting:?})", deadline.elapsed());
        }
        std::thread::sleep(TICK);
    }
    eprintln!("agentfs: stopped {name}");
    Ok(ExitCode::SUCCESS)
}

pub fn restart(target: Option<UrlTarget>, json: bool, wait: u64) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let (app, instance) = resolve(&home, target)?;
    let name = format!("{instance}.{app}");
    let Some(rec) = service::of(&home, &app, Some(&instance)).into_iter().rev().find(ServiceRecord::alive) else {
        let snap = scan::scan_instance(&home.run_dir(), &app, &instance).ok();
        if let Some(w) = snap.and_then(|s| s.wrappers.into_iter().find(|w| liveness::pid_alive(w.wrapper_pid))) {
            bail!(
                "{name} runs in the foreground (agentfs wrap, pid {}): restart it there, or start it with `agentfs up`",
                w.wrapper_pid
            );
        }
        bail!("{name} does not run in the background; start it with `agentfs up -- <command>`");
    };
    let since = liveness::now_ms();
    sys::kill(rec.pid, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(wait);
    while service::read(&rec.path(&home)).is_ok_and(|r| r.run_started_at_ms < since && r.alive()) {
        if Instant::now() > deadline {
            bail!("{name} did not restart in time; see agentfs logs {name}");
        }
        std::thread::sleep(TICK);
    }
    report(&home, &rec, (since, deadline), json)
}
