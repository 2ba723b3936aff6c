//! `agentfs supervise` (hidden; `agentfs up` starts it detached, in a
//! session of its own): the process that owns a background instance. It
//! runs `agentfs wrap` for the command — so naming, the shim, the router and
//! the process tree are exactly `wrap`'s — with stdout and stderr on one
//! pipe it copies to the instance's log, keeps `services/<pid>.json` up to
//! date, and starts the command again by its policy or on SIGHUP
//! (`agentfs restart`). SIGTERM (`agentfs down`) stops the wrapper, which
//! stops the tree; then the supervisor removes its record and exits.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use agentfs_registry::exit::Exit;
use agentfs_registry::record::VERSION;
use agentfs_registry::service::{self, Phase, RESTART_LIMIT, RESTART_WINDOW_SECS, Restart, ServiceRecord};
use agentfs_registry::{Home, liveness, scan};

use crate::args::UpArgs;
use crate::rotating_log::RotatingLog;
use crate::{applog, holding, identity, sys, tree};

/// The first delay before a restart; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long the wrapper has to write its record (and so name the instance).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(25);

pub fn run(args: UpArgs) -> Result<ExitCode> {
    let home = Home::from_env()?;
    home.ensure()?;
    let identity::Here { cwd, app, wanted } = identity::here(args.name.as_deref(), args.instance.as_deref())?;
    let snap = scan::scan(&home.run_dir()).with_context(|| format!("cannot read {}", home.run_dir().display()))?;
    let instance = identity::unique_instance(&app, &wanted, &snap);
    let now = liveness::now_ms();
    let rec = ServiceRecord {
        v: VERSION,
        pid: std::process::id(),
        app,
        instance,
        cmd: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd,
        restart: args.restart,
        phase: Phase::Running,
        restarts: 0,
        last_exit: None,
        reason: None,
        wrapper_pid: None,
        started_at_ms: now,
        run_started_at_ms: now,
        port: args.port.clone(),
    };
    let (reader, writer) = rustix::pipe::pipe().context("cannot make a pipe")?;
    let flags = Flags::install()?;
    let failures = VecDeque::new();
    let mut sup = Supervisor { home, args, rec, log: None, reader: Some(reader), writer, flags, failures, held: None };
    if let Err(why) = sup.open_log() {
        return Ok(sup.fail(why));
    }
    sup.save();
    Ok(sup.supervise())
}

struct Supervisor {
    home: Home,
    args: UpArgs,
    rec: ServiceRecord,
    log: Option<RotatingLog>,
    /// The pipe's read end until the pump thread takes it.
    reader: Option<OwnedFd>,
    /// Its write end: every run's stdout and stderr.
    writer: OwnedFd,
    flags: Flags,
    /// When the command failed, within the restart window.
    failures: VecDeque<Instant>,
    /// The record that holds the instance between runs (see `holding`).
    held: Option<PathBuf>,
}

/// How a run of the wrapper ended.
enum End {
    Exited(ExitStatus),
    /// `agentfs down`: SIGTERM (or SIGINT).
    Stopped,
    /// `agentfs restart`: SIGHUP.
    Restart,
}

impl Supervisor {
    fn supervise(&mut self) -> ExitCode {
        loop {
            let mut child = match self.spawn() {
                Ok(c) => c,
                Err(e) => return self.fail(format!("cannot run agentfs wrap: {e}")),
            };
            self.rec.wrapper_pid = Some(child.id());
            self.rec.phase = Phase::Running;
            self.rec.run_started_at_ms = liveness::now_ms();
            self.save();
            if let Err(why) = self.confirm_instance(&mut child) {
                self.stop_child(&mut child);
                return self.fail(why);
            }
            let end = self.wait(&mut child);
            self.rec.wrapper_pid = None;
            match end {
                End::Stopped => return self.stopped(),
                End::Restart => {
                    self.rec.restarts += 1;
                    self.note("restarting (agentfs restart)");
                }
                End::Exited(status) => {
                    if let Some(code) = self.after_exit(status) {
                        return code;
                    }
                }
            }
        }
    }

    /// Records the exit; the supervisor's exit code if it does not restart.
    fn after_exit(&mut self, status: ExitStatus) -> Option<ExitCode> {
        let exit = describe(status);
        self.rec.last_exit = Some(exit.clone());
        if self.rec.restart == Restart::No || status.success() {
            holding::release(&mut self.held);
            self.rec.phase = Phase::Exited;
            self.note(&format!("the command ended ({exit})"));
            self.save();
            return Some(ExitCode::SUCCESS);
        }
        let window = Duration::from_secs(RESTART_WINDOW_SECS);
        while self.failures.front().is_some_and(|t| t.elapsed() > window) {
            self.failures.pop_front();
        }
        if self.failures.len() >= RESTART_LIMIT {
            let why = format!(
                "the command failed {} times within {RESTART_WINDOW_SECS} s (last: {exit}); not restarting it again",
                RESTART_LIMIT + 1
            );
            return Some(self.fail(why));
        }
        let delay = FIRST_BACKOFF.saturating_mul(1 << self.failures.len()).min(MAX_BACKOFF);
        self.failures.push_back(Instant::now());
        self.rec.phase = Phase::Backoff;
        self.held = holding::hold(&self.home, &self.rec);
        self.note(&format!("the command failed ({exit}); restarting in {} ms", delay.as_millis()));
        self.save();
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.flags.term.swap(false, Ordering::SeqCst) {
                return Some(self.stopped());
            }
            if self.flags.hup.swap(false, Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(TICK);
        }
        self.rec.restarts += 1;
        None
    }

    /// `agentfs wrap` for the command, by the instance's name.
    fn spawn(&self) -> Result<Child> {
        let exe = std::env::current_exe().context("cannot find the agentfs executable")?;
        let mut cmd = Command::new(exe);
        cmd.arg("wrap");
        cmd.args(["--name", self.rec.app.as_str(), "--instance", self.rec.instance.as_str()]);
        if let Some(port) = &self.args.port {
            cmd.arg("--port").arg(port);
        }
        if self.args.debug {
            cmd.arg("--debug");
        }
        cmd.arg("--").args(&self.args.command);
        let out = self.writer.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(Stdio::from(out.try_clone()?)).stderr(Stdio::from(out));
        cmd.env(agentfs_registry::env::SUPERVISOR_PID, self.rec.pid.to_string());
        sys::terminate_with_parent(&mut cmd);
        Ok(cmd.spawn()?)
    }

    /// Opens the log of the instance and starts copying the pipe into it
    /// (the first time; again, a new log, if `wrap` took another name).
    fn open_log(&mut self) -> Result<(), String> {
        let instance = self.rec.instance.clone();
        let text = |e: anyhow::Error| crate::error_text(&e);
        if let Some(log) = &self.log {
            let path = self.home.app_log(&self.rec.app, &instance);
            applog::refuse_symlink(&path).map_err(text)?;
            log.reopen_at(path).map_err(text)?;
            return Ok(());
        }
        let (log, _) = applog::open(&self.home, &self.rec.app, &instance).map_err(text)?;
        for old in service::of(&self.home, &self.rec.app, Some(&instance)) {
            if old.pid != self.rec.pid && !old.alive() {
                let _ = service::remove(&self.home, &old);
            }
        }
        if let Some(reader) = self.reader.take() {
            let pumped = log.clone();
            std::thread::spawn(move || applog::pump(File::from(reader), pumped));
        }
        self.log = Some(log);
        self.note(&format!("started {} in {}", self.rec.cmd.join(" "), self.rec.cwd.display()));
        Ok(())
    }

    /// The instance is the one `wrap` claimed in its record (a `wrap`
    /// started at the same time may have taken the name this supervisor
    /// expected, and this one got `<id>-2`); that record replaces the one
    /// that held the instance between runs.
    fn confirm_instance(&mut self, child: &mut Child) -> Result<(), String> {
        let deadline = Instant::now() + CLAIM_TIMEOUT;
        loop {
            let snap = scan::scan(&self.home.run_dir()).map_err(|e| format!("cannot read run/: {e}"))?;
            if let Some(w) = snap.wrappers.iter().find(|w| w.wrapper_pid == child.id()) {
                holding::release(&mut self.held);
                if self.rec.instance != w.instance {
                    self.rec.instance = w.instance.clone();
                    self.open_log()?;
                    self.save();
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("agentfs wrap did not start within {CLAIM_TIMEOUT:?}"));
            }
            if let Ok(Some(_)) = child.try_wait() {
                holding::release(&mut self.held);
                return Ok(());
            }
            std::thread::sleep(TICK);
        }
    }

    fn wait(&mut self, child: &mut Child) -> End {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return End::Exited(status);
            }
            if self.flags.term.swap(false, Ordering::SeqCst) {
                self.rec.phase = Phase::Stopping;
                self.save();
                self.stop_child(child);
                return End::Stopped;
            }
            if self.flags.hup.swap(false, Ordering::SeqCst) {
                self.held = holding::hold(&self.home, &self.rec);
                holding::unlist(&self.home, &self.rec, child.id());
                self.stop_child(child);
                return End::Restart;
            }
            std::thread::sleep(TICK);
        }
    }

    /// SIGTERM to the wrapper (which stops the tree in its grace period),
    /// SIGKILL if it is still there well after that.
    fn stop_child(&self, child: &mut Child) {
        sys::kill(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + tree::grace().unwrap_or(Duration::from_secs(5)) + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(TICK);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn stopped(&mut self) -> ExitCode {
        holding::release(&mut self.held);
        self.note("stopped (agentfs down)");
        let _ = service::remove(&self.home, &self.rec);
        ExitCode::SUCCESS
    }

    fn fail(&mut self, why: String) -> ExitCode {
        holding::release(&mut self.held);
        self.note(&why);
        self.rec.phase = Phase::Failed;
        self.rec.reason = Some(why);
        self.save();
        ExitCode::FAILURE
    }

    /// A line of the supervisor's own in the instance's log.
    fn note(&self, text: &str) {
        if let Some(log) = &self.log {
            applog::line(log, format!("agentfs: {text}").as_bytes());
        }
    }

    fn save(&self) {
        let _ = service::write(&self.home, &self.rec);
    }
}

/// `exit status 1`, `killed by signal 9 (SIGKILL)` (a wrapper exits
/// 128 + N when its command was killed by signal N).
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match (status.code(), status.signal()) {
        (Some(c), _) if (129..=128 + 64).contains(&c) => (None, Some(c - 128)),
        (c, s) => (c, s),
    };
    Exit { pid: 0, code, signal, at_ms: 0 }.describe()
}

/// SIGTERM/SIGINT (stop) and SIGHUP (restart), as flags.
struct Flags {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Flags {
    fn install() -> Result<Flags> {
        let (term, hup) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, term.clone()).context("cannot handle signals")?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).context("cannot handle signals")?;
        Ok(Flags { term, hup })
    }
}
