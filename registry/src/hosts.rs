//! `/etc/hosts` for programs that do not resolve `*.localhost` themselves
//! (Node's fetch, Python, Go on macOS): agentfs keeps exact lines for its
//! routed hosts in one marked block and touches nothing else. The file is
//! read, only the block is changed, and the result goes to a temporary file
//! in the same directory (same mode and owner, flushed) that is renamed over
//! it — unless the file changed since it was read, or agentfs cannot parse
//! its own block, or the result would be empty: then nothing is written.
//! Writers of the block take a lock on the directory, so concurrent syncs
//! never lose each other's work or the user's lines.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The path of the hosts file: `AGENTFS_HOSTS_FILE`, else `/etc/hosts`.
pub fn path() -> PathBuf {
    std::env::var_os(crate::env::HOSTS_FILE)
        .filter(|v| !v.is_empty())
        .map_or_else(|| "/etc/hosts".into(), PathBuf::from)
}

/// The block's first line.
pub const BEGIN: &str =
    "# >>> agentfs: routed *.localhost hosts (managed by `agentfs hosts`; edits here are replaced) >>>";
/// The block's last line.
pub const END: &str = "# <<< agentfs <<<";

/// Why the hosts file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}; run it with sudo", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} has {why}; agentfs changes nothing until its block is whole again (fix or remove the lines between `# >>> agentfs` and `# <<< agentfs <<<`)", .path.display())]
    Unparsable { path: PathBuf, why: String },
    #[error("{} changed while agentfs was updating it; nothing was written, run it again", .path.display())]
    Changed { path: PathBuf },
    #[error("{} would be left empty; nothing was written", .path.display())]
    WouldBeEmpty { path: PathBuf },
}

/// The lines of the block for `hosts` (each once, sorted): `127.0.0.1 h` and `::1 h`.
pub fn block(hosts: &[String]) -> String {
    let mut names: Vec<&str> = hosts.iter().map(String::as_str).filter(|h| valid_name(h)).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = format!("{BEGIN}\n");
    for h in names {
        out.push_str(&format!("127.0.0.1 {h}\n::1 {h}\n"));
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// A name agentfs would write: a `.localhost` host of DNS labels.
fn valid_name(h: &str) -> bool {
    h.ends_with(".localhost")
        && h.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Where the block is in `text`: the byte range of its lines, if there is one.
pub fn find(text: &str) -> Result<Option<std::ops::Range<usize>>, String> {
    let mut begin = None;
    let mut found = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare.starts_with("# >>> agentfs") {
            if begin.is_some() || found.is_some() {
                return Err("two agentfs blocks (or a block that does not end)".into());
            }
            begin = Some(at);
        } else if bare == END {
            let Some(b) = begin.take() else { return Err("the end of an agentfs block without its start".into()) };
            found = Some(b..at + line.len());
        }
        at += line.len();
    }
    if begin.is_some() {
        return Err("an agentfs block that does not end".into());
    }
    Ok(found)
}

/// `text` with its block replaced by `block` (added at the end if there is
/// none; removed with `None`). Everything outside the block is kept byte
/// for byte.
pub fn with_block(text: &str, block: Option<&str>) -> Result<String, String> {
    let new = block.unwrap_or("");
    Ok(match find(text)? {
        Some(range) => format!("{}{new}{}", &text[..range.start], &text[range.end..]),
        None if new.is_empty() => text.to_owned(),
        None if text.is_empty() || text.ends_with('\n') => format!("{text}{new}"),
        None => format!("{text}\n{new}"),
    })
}

/// Sets the block of the file at `path` to `block` (`None`: removes it).
/// Returns whether the file changed.
pub fn update(path: &Path, block: Option<&str>) -> Result<bool, HostsError> {
    update_with(path, block, || {})
}

/// [`update`], calling `between` after the read and before the write (tests
/// use it to change the file in between).
pub fn update_with(path: &Path, block: Option<&str>, between: impl FnOnce()) -> Result<bool, HostsError> {
    let read_err = |source| HostsError::Read { path: path.to_owned(), source };
    let write_err = |source| HostsError::Write { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let lock = File::open(dir).map_err(read_err)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| read_err(e.into()))?;
    let before = fs::read(path).map_err(read_err)?;
    let meta = fs::metadata(path).map_err(read_err)?;
    let text = String::from_utf8_lossy(&before);
    let after = with_block(&text, block).map_err(|why| HostsError::Unparsable { path: path.to_owned(), why })?;
    if after.as_bytes() == before.as_slice() {
        return Ok(false);
    }
    if after.trim().is_empty() {
        return Err(HostsError::WouldBeEmpty { path: path.to_owned() });
    }
    between();
    let tmp = dir.join(format!(".{}.agentfs-{}.tmp", file_name(path), std::process::id()));
    let written = write_like(&tmp, after.as_bytes(), &meta).map_err(write_err);
    let result = match written.and_then(|()| fs::read(path).map_err(read_err)) {
        Ok(now) if now != before => Err(HostsError::Changed { path: path.to_owned() }),
        Ok(_) => fs::rename(&tmp, path).and_then(|()| File::open(dir)?.sync_all()).map_err(write_err),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// A new file at `tmp` holding `bytes`, with the mode (and, as root, the
/// owner) of `like`, flushed to disk.
fn write_like(tmp: &Path, bytes: &[u8], like: &fs::Metadata) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    f.write_all(bytes)?;
    f.set_permissions(fs::Permissions::from_mode(like.mode() & 0o7777))?;
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::fchown(&f, Some(like.uid()), Some(like.gid()))?;
    }
    f.sync_all()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "hosts".into(), |n| n.to_string_lossy().into_owned())
}

/// The hosts in the file's block (each name once), or `None` without a block.
pub fn listed(path: &Path) -> Result<Option<Vec<String>>, HostsError> {
    let text = fs::read_to_string(path).map_err(|source| HostsError::Read { path: path.to_owned(), source })?;
    let range = find(&text).map_err(|why| HostsError::Unparsable { path: path.to_owned(), why })?;
    Ok(range.map(|r| {
        let mut names: Vec<String> = text[r]
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|h| valid_name(h))
            .map(str::to_owned)
            .collect();
        names.dedup();
        names
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const USER: &str = "127.0.0.1 localhost\n# mine\n10.0.0.5 nas\n";

    #[test]
    fn the_block_is_replaced_in_place_and_nothing_else_changes() {
        let stale = format!("{USER}{BEGIN}\n127.0.0.1 old.localhost\n{END}\n192.168.1.9 printer\n");
        let new = block(&["b.shop.localhost".into(), "shop.localhost".into(), "shop.localhost".into()]);
        let out = with_block(&stale, Some(&new)).unwrap();
        assert_eq!(out, format!("{USER}{new}192.168.1.9 printer\n"));
        assert!(new.contains("127.0.0.1 shop.localhost\n::1 shop.localhost\n") && !new.contains("old"));
        assert_eq!(with_block(&out, None).unwrap(), format!("{USER}192.168.1.9 printer\n"));
        assert_eq!(with_block("a b", Some(&new)).unwrap(), format!("a b\n{new}"), "a last line without newline");
        assert_eq!(with_block(USER, None).unwrap(), USER);
    }

    #[test]
    fn a_broken_block_is_refused() {
        for bad in [format!("{BEGIN}\nx\n"), format!("x\n{END}\n"), format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n")] {
            assert!(with_block(&bad, None).is_err(), "{bad}");
        }
        let evil = block(&["a.localhost\n1.2.3.4 bank.com".into(), "x.example.com".into(), "ok.localhost".into()]);
        assert!(!evil.contains("bank") && !evil.contains("example") && evil.contains("ok.localhost"), "{evil}");
    }

    #[test]
    fn update_keeps_the_mode_and_refuses_a_file_changed_meanwhile() {
        let dir = TempDir::new("hosts");
        let path = dir.path().join("hosts");
        fs::write(&path, USER).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let b = block(&["shop.localhost".into()]);
        assert!(update(&path, Some(&b)).unwrap());
        assert!(!update(&path, Some(&b)).unwrap(), "nothing to change");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        assert_eq!(listed(&path).unwrap(), Some(vec!["shop.localhost".to_owned()]));
        let other = block(&["blog.localhost".into()]);
        let edit = || fs::write(&path, format!("{USER}1.1.1.1 added\n{b}")).unwrap();
        assert!(matches!(update_with(&path, Some(&other), edit), Err(HostsError::Changed { .. })));
        assert!(fs::read_to_string(&path).unwrap().contains("1.1.1.1 added"), "the concurrent edit is kept");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
        fs::write(&path, b.as_bytes()).unwrap();
        assert!(matches!(update(&path, None), Err(HostsError::WouldBeEmpty { .. })));
    }
}
