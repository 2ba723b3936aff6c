//! `agentfs logs [-f] [-n N] [TARGET]`: the last lines of a background
//! instance's log (`logs/<app>.<instance>.log`, and the rotated `.log.1`
//! before it when more lines are asked for), and with `-f` what it writes
//! next, across rotations. Only a regular file of ours is read.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use agentfs_registry::Home;
use agentfs_registry::safefile::{self, SafeReadError};

use crate::url::UrlTarget;
use crate::{applog, rotating_log, up};

/// Logs are rotated at a size limit; a file much larger is not one of ours.
const READ_CAP: u64 = 1 << 30;

pub fn run(target: Option<UrlTarget>, follow: bool, lines: usize) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let (app, instance) = up::resolve(&home, target)?;
    let path = home.app_log(&app, &instance);
    if std::fs::symlink_metadata(&path).is_err() {
        bail!(
            "{instance}.{app} has no log ({} does not exist); only instances started with `agentfs up` have one",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    for line in tail(&path, lines)? {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if follow {
        follow_file(&path, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The last `n` lines of the log at `path` (reaching into `path.1`).
pub fn tail(path: &Path, n: usize) -> Result<Vec<String>> {
    let mut lines = read_lines(path)?;
    if lines.len() < n {
        let mut older = read_lines(&rotating_log::rotated(path)).unwrap_or_default();
        older.append(&mut lines);
        lines = older;
    }
    Ok(lines.split_off(lines.len().saturating_sub(n)))
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    applog::refuse_symlink(path)?;
    match safefile::read_small(path, READ_CAP) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(refused(path, e)),
    }
}

fn refused(path: &Path, e: SafeReadError) -> anyhow::Error {
    anyhow::anyhow!("cannot read {}: {e}", path.display())
}

/// Prints what is appended to `path` until interrupted; a rotation (a new
/// file at `path`) is followed from its start.
fn follow_file(path: &Path, out: &mut impl Write) -> Result<()> {
    let mut file = safefile::open_checked(path, READ_CAP).map_err(|e| refused(path, e))?;
    let mut pos = file.seek(SeekFrom::End(0))?;
    let mut ino = file.metadata()?.ino();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).context("cannot read the log")?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            pos += n as u64;
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
        let Ok(meta) = std::fs::symlink_metadata(path) else { continue };
        if meta.ino() != ino || meta.len() < pos {
            if meta.ino() != ino {
                // What was written to the old file before it was moved aside.
                std::io::copy(&mut file, out)?;
            }
            applog::refuse_symlink(path)?;
            file = safefile::open_checked(path, READ_CAP).map_err(|e| refused(path, e))?;
            (pos, ino) = (0, meta.ino());
        }
    }
}
