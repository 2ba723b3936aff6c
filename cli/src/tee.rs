//! `agentfs wrap --log`: a foreground run whose output also goes to the
//! instance's log (`logs/<app>.<instance>.log`, as for `agentfs up`), so an
//! agent can read what a person's terminal shows. What the app writes reaches
//! the wrapper's stdout and stderr unchanged and at once; the log gets it
//! line by line with timestamps.
//!
//! An output that is not a terminal becomes a pipe the wrapper copies. An
//! output that is a terminal cannot be read by anyone but the terminal, and
//! replacing it by a pipe would change the app (no colours, no interactive
//! keys, line buffering): so then, and only then, the app gets a pty pair —
//! a terminal of its own, in a session of its own, with the size and modes of
//! the real one — and the wrapper relays keys to it (the real terminal in raw
//! mode, so Ctrl-C and Ctrl-Z reach the app through its pty) and its output
//! back, and passes on window size changes. When the app is stopped
//! (Ctrl-Z) the wrapper restores the terminal and stops too, so the shell
//! sees the job stop; `fg` continues both.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::termios::{OptionalActions, Termios, isatty, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize};

use crate::applog::{self, Sink};
use crate::rotating_log::RotatingLog;
use crate::sys;
use crate::tree::StopHook;

/// How long the wrapper waits, once the command is done, for the last output.
const DRAIN: Duration = Duration::from_secs(2);

/// The running tee: its copying threads and, with a pty, the real terminal's modes.
pub struct Tee {
    /// One message per copying thread of output when it ends.
    done: Receiver<()>,
    outputs: usize,
    /// With a pty: the descriptor the command's slave is on (0, 1 or 2) in the child.
    pty_fd: Option<i32>,
    raw: Option<Arc<RawMode>>,
    /// With a pty and keys to relay: its master, until the command runs.
    keys: Option<OwnedFd>,
}

/// The real terminal (stdin) in raw mode while the app has its own pty; restored on drop.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mode = RawMode { saved };
        mode.raw();
        Some(mode)
    }

    fn raw(&self) {
        let mut raw = self.saved.clone();
        raw.make_raw();
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &raw);
    }

    fn restore(&self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Runs `f` on standard descriptor `fd` (0, 1 or 2).
fn on_std<R>(fd: i32, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
    match fd {
        0 => f(std::io::stdin().as_fd()),
        1 => f(std::io::stdout().as_fd()),
        _ => f(std::io::stderr().as_fd()),
    }
}

fn dup_std(fd: i32) -> std::io::Result<File> {
    on_std(fd, |b| b.try_clone_to_owned()).map(File::from)
}

/// Sets up `cmd`'s stdout and stderr (and, with a pty, stdin) to be teed
/// into `log`, and starts copying.
pub fn prepare(cmd: &mut Command, log: &RotatingLog) -> Result<Tee> {
    let ttys: Vec<i32> = (0..3).filter(|&fd| on_std(fd, |b| isatty(b))).collect();
    let (tx, done) = channel();
    let mut tee = Tee { done, outputs: 0, pty_fd: None, raw: None, keys: None };
    let pty = if ttys.iter().any(|&fd| fd > 0) { Some(open_pty(ttys[0]).context("cannot open a pty")?) } else { None };
    for fd in [1, 2] {
        match &pty {
            Some((_, slave)) if ttys.contains(&fd) => set_std(cmd, fd, Stdio::from(slave.try_clone()?)),
            _ => {
                let (reader, writer) = rustix::pipe::pipe().context("cannot make a pipe")?;
                set_std(cmd, fd, Stdio::from(writer));
                let echo = dup_std(fd)?;
                tee.copy(reader, Sink { log: log.clone(), echo: Some(echo), terminal: false }, &tx);
            }
        }
    }
    if let Some((master, slave)) = pty {
        if ttys.contains(&0) {
            cmd.stdin(Stdio::from(slave.try_clone()?));
            tee.keys = Some(master.try_clone()?);
        }
        relay_window_size(master.try_clone()?);
        let shown_on = *ttys.iter().find(|&&fd| fd > 0).unwrap_or(&1);
        let echo = dup_std(shown_on)?;
        tee.copy(master, Sink { log: log.clone(), echo: Some(echo), terminal: true }, &tx);
        tee.pty_fd = Some(*ttys.iter().find(|&&fd| fd > 0).unwrap_or(&1));
    }
    Ok(tee)
}

impl Tee {
    /// With a pty, the descriptor (in the child) of its slave: the command
    /// gets its own session on it (see `tree::prepare`), not the real terminal.
    pub fn pty_fd(&self) -> Option<i32> {
        self.pty_fd
    }

    /// The command runs as process group `pgid`: relay the keys typed at the
    /// real terminal (now in raw mode) to its pty — if the wrapper is in
    /// front there (a job started in the background gets no keys, as it would
    /// get none without `--log`, and must not change the terminal's modes).
    pub fn started(&mut self, pgid: u32) {
        let in_front = sys::foreground_group(0) == Some(sys::own_group_id());
        if let Some(master) = self.keys.take().filter(|_| in_front) {
            self.raw = RawMode::enter().map(Arc::new);
            relay_keys(master, pgid);
        }
    }

    /// With a pty: when the command is stopped, give the terminal its modes
    /// back and stop the wrapper the same way; once continued, continue it.
    pub fn stop_hook(&self) -> Option<StopHook> {
        let raw = self.raw.clone()?;
        Some(Arc::new(move |pgid, signal| {
            raw.restore();
            sys::stop_self(signal);
            raw.raw();
            sys::kill_group(pgid, libc::SIGCONT);
        }))
    }

    fn copy(&mut self, source: OwnedFd, sink: Sink, tx: &Sender<()>) {
        let tx = tx.clone();
        self.outputs += 1;
        std::thread::spawn(move || {
            applog::pump_to(File::from(source), sink);
            let _ = tx.send(());
        });
    }

    /// Waits (a little) for the command's last output to be copied, then
    /// restores the terminal.
    pub fn finish(self) {
        let deadline = Instant::now() + DRAIN;
        for _ in 0..self.outputs {
            if self.done.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                break;
            }
        }
    }
}

fn set_std(cmd: &mut Command, fd: i32, io: Stdio) {
    match fd {
        1 => cmd.stdout(io),
        _ => cmd.stderr(io),
    };
}

/// A pty pair whose slave has the modes and size of the terminal on `like`.
fn open_pty(like: i32) -> Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = std::path::PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.as_bytes()));
    let slave: OwnedFd = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&path)?.into();
    if let Ok(modes) = on_std(like, |b| tcgetattr(b)) {
        let _ = tcsetattr(&slave, OptionalActions::Now, &modes);
    }
    if let Ok(size) = on_std(like, |b| tcgetwinsize(b)) {
        let _ = tcsetwinsize(&slave, size);
    }
    Ok((master, slave))
}

/// Copies the keys typed at the real terminal to the app's pty. The suspend
/// key (Ctrl-Z), while the app's pty generates signals, stops the app's group
/// with SIGSTOP instead: the app's group is orphaned (its parent, the
/// wrapper, is in another session), and Linux discards SIGTSTP there, from
/// the terminal or from kill(2) alike.
fn relay_keys(master: OwnedFd, pgid: u32) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || relay(&master, &buf[..n], pgid).is_err() {
                break;
            }
        }
    });
}

fn relay(master: &OwnedFd, keys: &[u8], pgid: u32) -> std::io::Result<()> {
    use rustix::termios::{LocalModes, SpecialCodeIndex};
    let suspend = tcgetattr(master)
        .ok()
        .filter(|t| t.local_modes.contains(LocalModes::ISIG))
        .map(|t| t.special_codes[SpecialCodeIndex::VSUSP])
        .filter(|&c| c != 0);
    let mut out = File::from(master.try_clone()?);
    let Some(suspend) = suspend else { return out.write_all(keys) };
    for (i, part) in keys.split(|&b| b == suspend).enumerate() {
        if i > 0 {
            sys::kill_group(pgid, libc::SIGSTOP);
        }
        out.write_all(part)?;
    }
    Ok(())
}

/// Gives the app's pty the real terminal's size whenever it changes (the
/// kernel then sends SIGWINCH to the app).
fn relay_window_size(master: OwnedFd) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]) else { return };
    std::thread::spawn(move || {
        for _ in &mut signals {
            let real = (0..3).find_map(|fd| on_std(fd, |b| tcgetwinsize(b)).ok());
            if let Some(size) = real {
                let _ = tcsetwinsize(&master, size);
            }
        }
    });
}
