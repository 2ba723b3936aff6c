//! `logs/<app>.<instance>.log`: what a background instance printed, one
//! line per line it wrote, each with a UTC timestamp (in the file only: the
//! app's own output is not changed). Written by the supervisor from one pipe
//! that is the command's stdout and stderr (so their order is kept), rotated
//! at `AGENTFS_LOG_MAX_BYTES` (default 8 MiB) to `<name>.log.1`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use agentfs_registry::{Home, Label, liveness};

use crate::rotating_log::RotatingLog;

/// The size limit's variable.
pub const MAX_BYTES_VAR: &str = "AGENTFS_LOG_MAX_BYTES";
const DEFAULT_MAX_BYTES: u64 = 8 << 20;
/// A partial line (no newline yet) is written after this long without more output.
const PARTIAL_AFTER: Duration = Duration::from_millis(300);
/// A line longer than this is written in pieces.
const LONGEST_LINE: usize = 16 * 1024;

/// `AGENTFS_LOG_MAX_BYTES`: at least 1 KiB.
pub fn max_bytes() -> Result<u64> {
    match std::env::var(MAX_BYTES_VAR) {
        Err(_) => Ok(DEFAULT_MAX_BYTES),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1024 => Ok(n),
            _ => bail!("{MAX_BYTES_VAR}={v:?} is not a size in bytes of at least 1024"),
        },
    }
}

/// Opens (creates, 0600) the log of an instance; a symlink in its place is refused.
pub fn open(home: &Home, app: &Label, instance: &Label) -> Result<(RotatingLog, PathBuf)> {
    let path = home.app_log(app, instance);
    refuse_symlink(&path)?;
    Ok((RotatingLog::open(path.clone(), max_bytes()?)?, path))
}

/// One line naming the problem when `path` is a symlink (agentfs never follows one).
pub fn refuse_symlink(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "refusing {}: it is a symlink, and agentfs writes and reads only its own files; remove it",
            path.display()
        );
    }
    Ok(())
}

/// `2026-12-04T02:36:35.123Z`.
pub fn stamp(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Writes one line of the instance's (or the supervisor's) output.
pub fn line(log: &RotatingLog, text: &[u8]) {
    let mut out = Vec::with_capacity(text.len() + 26);
    out.extend_from_slice(stamp(liveness::now_ms()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    let _ = log.append(&out);
}

/// Where a pump sends what it reads.
pub struct Sink {
    pub log: RotatingLog,
    /// Also written here, unchanged and at once (`wrap --log`: the terminal or the wrapper's own stdout/stderr).
    pub echo: Option<File>,
    /// Output meant for a terminal: escape sequences are left out of the
    /// log, and of a line redrawn with `\r` only what was shown last is kept.
    pub terminal: bool,
}

/// Copies `source` to `log` line by line until every writer has closed it
/// (for a pty, until `read` fails once the terminal's other side is closed).
pub fn pump(source: File, log: RotatingLog) {
    pump_to(source, Sink { log, echo: None, terminal: false });
}

pub fn pump_to(mut source: File, mut sink: Sink) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let write_line = |sink: &Sink, text: &[u8]| match sink.terminal {
        true => line(&sink.log, &shown(text)),
        false => line(&sink.log, text),
    };
    loop {
        if !pending.is_empty() && !readable_within(&source, PARTIAL_AFTER) {
            write_line(&sink, &std::mem::take(&mut pending));
            continue;
        }
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(echo) = sink.echo.as_mut() {
            use std::io::Write;
            let _ = echo.write_all(&buf[..n]);
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let rest = pending.split_off(end + 1);
            write_line(&sink, &std::mem::replace(&mut pending, rest));
        }
        while pending.len() > LONGEST_LINE {
            let rest = pending.split_off(LONGEST_LINE);
            write_line(&sink, &std::mem::replace(&mut pending, rest));
        }
    }
    if !pending.is_empty() {
        write_line(&sink, &pending);
    }
}

/// What a terminal shows of a line: no escape sequences (CSI, OSC and
/// the short ones), no line-end `\r`, and of a line redrawn after a `\r`
/// (a progress bar) only its last drawing.
pub fn shown(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            0x1b => i = skip_escape(text, i),
            b'\r' if text[i + 1..].iter().all(|b| *b == b'\r' || *b == b'\n') => i += 1,
            b'\r' => {
                out.clear();
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The index after the escape sequence that starts at `start`.
fn skip_escape(text: &[u8], start: usize) -> usize {
    let at = |i: usize| text.get(i).copied();
    match at(start + 1) {
        Some(b'[') => {
            let mut i = start + 2;
            while at(i).is_some_and(|b| !(0x40..=0x7e).contains(&b)) {
                i += 1;
            }
            i + 1
        }
        Some(b']') => {
            let mut i = start + 2;
            while let Some(b) = at(i) {
                if b == 0x07 {
                    return i + 1;
                }
                if b == 0x1b && at(i + 1) == Some(b'\\') {
                    return i + 2;
                }
                i += 1;
            }
            i
        }
        // ESC, intermediate bytes (`(`, `#` …), a final byte: `ESC ( B`, `ESC 7`.
        Some(_) => {
            let mut i = start + 1;
            while at(i).is_some_and(|b| (0x20..=0x2f).contains(&b)) {
                i += 1;
            }
            i + 1
        }
        None => start + 1,
    }
}

fn readable_within(pipe: &File, wait: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(pipe, PollFlags::IN)];
    let timeout = Timespec { tv_sec: 0, tv_nsec: i64::from(wait.subsec_nanos()) };
    poll(&mut fds, Some(&timeout)).map_or(true, |n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc() {
        assert_eq!(stamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(stamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(stamp(1_796_352_995_004), "2026-12-04T02:56:35.004Z");
    }

    #[test]
    fn a_terminal_line_is_logged_as_shown() {
        assert_eq!(shown(b"\x1b[32m  VITE\x1b[39m ready\r\n"), b"  VITE ready\n");
        assert_eq!(shown(b"10%\r50%\r100%\n"), b"100%\n");
        assert_eq!(shown(b"\x1b]0;title\x07plain \x1b(Bx\x1b"), b"plain x");
        assert_eq!(shown(b"\x1b]8;;http://a\x1b\\link\x1b]8;;\x1b\\\n"), b"link\n");
    }

    #[test]
    fn each_line_is_stamped_and_a_partial_one_written_after_a_pause() {
        use std::io::Write;
        let dir = agentfs_registry::testutil::TempDir::new("applog");
        let path = dir.path().join("a.log");
        let log = RotatingLog::open(path.clone(), 1 << 20).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut w = File::from(w);
        let pumping = std::thread::spawn(move || pump(File::from(r), log));
        w.write_all(b"one\ntwo\npart").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&path).unwrap().contains("part") {
            assert!(std::time::Instant::now() < deadline, "the partial line was not written");
            std::thread::sleep(Duration::from_millis(20));
        }
        w.write_all(b"ial\n").unwrap();
        drop(w);
        pumping.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, ["one", "two", "part", "ial"]);
        assert!(text.lines().all(|l| l.len() > 25 && l.as_bytes()[23] == b'Z'), "{text}");
    }
}
