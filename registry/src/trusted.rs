//! Whether the local CA is trusted, so that agentfs shows `https://` URLs:
//! `agentfs trust` writes `$AGENTFS_HOME/ca/trusted` (JSON: the digest of
//! the `root.pem` it installed, the key ids in the names it used, the stores
//! it is in) and
//! `agentfs trust --remove` deletes it. The CA counts as trusted while that
//! record names at least one store and its digest is the current root's: a
//! new root (the old one moved away) is not trusted until `agentfs trust`
//! runs again. Reading it is two small file reads, cheap enough for every
//! `wrap` and `ps`; asking the trust stores themselves (certutil, the
//! keychain) would start programs each time.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::names::{Origin, fnv1a64};
use crate::{atomic, safefile};

/// The largest record or root read.
const FILE_CAP: u64 = 64 * 1024;

/// What `agentfs trust` did, kept so that `--remove` undoes exactly that.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    pub v: u32,
    /// [`root_digest`] of the `root.pem` that was trusted.
    pub root: String,
    /// The key ids of the roots added (the names in the stores carry them:
    /// `agentfs local CA (<id>)` in NSS, `agentfs CA <id>` in keychains).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Where it is trusted: NSS database directories, the system store's
    /// file, keychains.
    #[serde(default)]
    pub stores: Vec<PathBuf>,
}

/// `ca/trusted`.
pub fn path(home: &Home) -> PathBuf {
    home.root().join("ca").join("trusted")
}

fn root_pem(home: &Home) -> PathBuf {
    home.root().join("ca").join("root.pem")
}

/// A short, stable digest of a root certificate file (FNV-1a 64 of its
/// bytes, hex): tells the trusted root from a new one. Not cryptographic;
/// the record and the root are both files of the user's private home.
pub fn root_digest(pem: &[u8]) -> String {
    format!("{:016x}", fnv1a64(pem))
}

/// The record, if there is one that parses.
pub fn read(home: &Home) -> Option<TrustRecord> {
    let bytes = safefile::read_small(&path(home), FILE_CAP).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the record atomically (0600).
pub fn write(home: &Home, record: &TrustRecord) -> io::Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(io::Error::other)?;
    atomic::write(&path(home), format!("{text}\n").as_bytes())
}

/// Removes the record; not being there is fine.
pub fn remove(home: &Home) -> io::Result<()> {
    match std::fs::remove_file(path(home)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The CA of `home` is trusted somewhere, and it is still the same root.
pub fn is_trusted(home: &Home) -> bool {
    let Some(record) = read(home) else { return false };
    !record.stores.is_empty() && current_digest(&root_pem(home)).is_some_and(|d| d == record.root)
}

fn current_digest(pem: &Path) -> Option<String> {
    safefile::read_small(pem, FILE_CAP).ok().map(|b| root_digest(&b))
}

/// How URLs of the router on `port` are written for `home`: `https://` once
/// the CA is trusted, except on port 80, whose URLs carry no port (TLS there
/// would need `:80`), as the router's own views do.
pub fn origin(home: &Home, port: u16) -> Origin {
    Origin { https: port != 80 && is_trusted(home), port }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn trusted_only_while_the_root_is_the_recorded_one() {
        let dir = TempDir::new("trusted");
        let home = Home::at(dir.path().join("h")).unwrap();
        home.ensure().unwrap();
        std::fs::create_dir(home.root().join("ca")).unwrap();
        assert!(!is_trusted(&home), "no record");
        std::fs::write(root_pem(&home), "root one").unwrap();
        let record = TrustRecord { v: 1, root: root_digest(b"root one"), ids: vec![], stores: vec!["/db".into()] };
        write(&home, &record).unwrap();
        assert_eq!(read(&home).as_ref(), Some(&record));
        assert!(is_trusted(&home));
        assert_eq!(origin(&home, 7355).url("shop.localhost"), "https://shop.localhost:7355");
        assert_eq!(origin(&home, 80).url("shop.localhost"), "http://shop.localhost", "port 80 stays plain");
        std::fs::write(root_pem(&home), "root two").unwrap();
        assert!(!is_trusted(&home), "a new root is not trusted");
        write(&home, &TrustRecord { stores: vec![], root: root_digest(b"root two"), ..record }).unwrap();
        assert!(!is_trusted(&home), "trusted nowhere");
        remove(&home).unwrap();
        remove(&home).unwrap();
        assert_eq!(origin(&home, 7355).url("shop.localhost"), "http://shop.localhost:7355");
    }
}
