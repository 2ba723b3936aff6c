//! The user's NSS databases, where Chrome, Chromium and Firefox on Linux
//! look for roots (not only the system store): `~/.pki/nssdb` (created with
//! an empty password when a Chromium-family browser would read it and it is
//! not there yet), the snap Chromium's, and every Firefox profile with a
//! `cert9.db`. Changed with `certutil` (libnss3-tools / nss-tools), as the
//! user, never with sudo; the CA goes in with trust `C,,` (a CA for TLS
//! servers) under its nickname, and only that nickname is ever deleted.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::trust::{self, Ca, Place};

/// One database: its directory and who reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Db {
    pub dir: PathBuf,
    pub readers: &'static str,
}

impl Db {
    fn shown(&self) -> String {
        format!("NSS database {} ({})", self.dir.display(), self.readers)
    }

    fn arg(&self) -> String {
        format!("sql:{}", self.dir.display())
    }
}

const CHROMIUM: &str = "Chrome, Chromium";
const FIREFOX: &str = "Firefox";

/// The databases there are under `home`, with `~/.pki/nssdb` listed when a
/// Chromium-family browser is installed even if it is not there yet.
pub fn databases(home: &Path) -> Vec<Db> {
    let mut dbs = Vec::new();
    let pki = home.join(".pki/nssdb");
    if pki.join("cert9.db").exists() || chromium_installed(home) {
        dbs.push(Db { dir: pki, readers: CHROMIUM });
    }
    let snap = home.join("snap/chromium/current/.pki/nssdb");
    if snap.join("cert9.db").exists() {
        dbs.push(Db { dir: snap, readers: "snap Chromium" });
    }
    for profiles in [home.join(".mozilla/firefox"), home.join("snap/firefox/common/.mozilla/firefox")] {
        let Ok(entries) = std::fs::read_dir(&profiles) else { continue };
        let mut found: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.join("cert9.db").exists()).collect();
        found.sort();
        dbs.extend(found.into_iter().map(|dir| Db { dir, readers: FIREFOX }));
    }
    dbs
}

/// A Chromium-family browser on PATH, or a profile of one under `home`.
fn chromium_installed(home: &Path) -> bool {
    let programs = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "brave-browser"];
    let profiles = ["chromium", "google-chrome", "BraveSoftware", "microsoft-edge"];
    programs.iter().any(|p| trust::tool(p).is_some()) || profiles.iter().any(|p| home.join(".config").join(p).is_dir())
}

/// `certutil`, or `None` (the user is told to install it).
pub fn certutil() -> Option<PathBuf> {
    trust::tool("certutil")
}

/// The one line said when `certutil` is missing.
pub const NO_CERTUTIL: &str = "certutil is not installed: install libnss3-tools (Debian, Ubuntu) or nss-tools \
    (Fedora, Arch: nss), then run `agentfs trust` again, for Chrome, Chromium and Firefox";

fn certutil_cmd(certutil: &Path, db: &Db) -> Command {
    let mut c = Command::new(certutil);
    c.arg("-d").arg(db.arg());
    c
}

/// The PEM listed under `nick` in `db`, if any.
fn listed(certutil: &Path, db: &Db, nick: &str) -> Option<String> {
    if !db.dir.join("cert9.db").exists() {
        return None;
    }
    trust::output(certutil_cmd(certutil, db).args(["-L", "-a", "-n", nick])).ok().filter(|pem| pem.contains("BEGIN"))
}

/// Adds the CA to every database; `Ok(false)` when a step could not be done.
pub fn add(ca: &Ca, home: &Path) -> Result<bool> {
    let dbs = databases(home);
    if dbs.is_empty() {
        println!("agentfs: no NSS database under {} (no Chrome, Chromium or Firefox profile)", home.display());
        return Ok(true);
    }
    let Some(certutil) = certutil() else {
        println!("agentfs: {NO_CERTUTIL}");
        return Ok(false);
    };
    let nick = trust::nickname(ca.id());
    let mut complete = true;
    for db in &dbs {
        match add_to(&certutil, db, &nick, ca) {
            Ok(done) => println!("agentfs: {done} {}", db.shown()),
            Err(e) => {
                println!("agentfs: could not add the CA to {}: {e:#}", db.shown());
                complete = false;
            }
        }
    }
    Ok(complete)
}

fn add_to(certutil: &Path, db: &Db, nick: &str, ca: &Ca) -> Result<&'static str> {
    let mut created = false;
    if !db.dir.join("cert9.db").exists() {
        std::fs::create_dir_all(&db.dir).with_context(|| format!("cannot create {}", db.dir.display()))?;
        trust::output(certutil_cmd(certutil, db).args(["-N", "--empty-password"]))?;
        created = true;
    }
    match listed(certutil, db, nick) {
        Some(pem) if trust::same_cert(&pem, ca.der.as_deref()) => return Ok("the CA is already in"),
        Some(_) => delete(certutil, db, nick)?,
        None => {}
    }
    trust::output(certutil_cmd(certutil, db).args(["-A", "-t", "C,,", "-n", nick, "-i"]).arg(&ca.pem))?;
    Ok(if created { "created, and added the CA to," } else { "added the CA to" })
}

/// Deletes every certificate listed under `nick` (a nickname can repeat).
fn delete(certutil: &Path, db: &Db, nick: &str) -> Result<()> {
    for _ in 0..16 {
        if listed(certutil, db, nick).is_none() {
            return Ok(());
        }
        trust::output(certutil_cmd(certutil, db).args(["-D", "-n", nick]))?;
    }
    anyhow::bail!("{nick:?} is still listed after 16 deletions")
}

/// Removes the CA (every id of `ca`) from the databases there are and
/// those `recorded`; `Ok(false)` when one could not be changed.
pub fn remove(ca: &Ca, home: &Path, recorded: &[PathBuf]) -> Result<bool> {
    let mut dbs: Vec<Db> = databases(home).into_iter().filter(|d| d.dir.join("cert9.db").exists()).collect();
    for dir in recorded.iter().filter(|d| d.join("cert9.db").exists()) {
        if !dbs.iter().any(|d| &d.dir == dir) {
            dbs.push(Db { dir: dir.clone(), readers: "recorded by agentfs trust" });
        }
    }
    if dbs.is_empty() {
        return Ok(true);
    }
    let Some(certutil) = certutil() else {
        println!("agentfs: {NO_CERTUTIL}");
        return Ok(false);
    };
    let mut complete = true;
    for db in &dbs {
        for nick in ca.ids.iter().map(|id| trust::nickname(id)) {
            if listed(&certutil, db, &nick).is_none() {
                continue;
            }
            match delete(&certutil, db, &nick) {
                Ok(()) => println!("agentfs: removed {nick:?} from {}", db.shown()),
                Err(e) => {
                    println!("agentfs: could not remove {nick:?} from {}: {e:#}", db.shown());
                    complete = false;
                }
            }
        }
    }
    Ok(complete)
}

/// Each database there is, and whether it has the CA.
pub fn places(ca: &Ca, home: &Path) -> Vec<Place> {
    let certutil = certutil();
    let nick = trust::nickname(ca.id());
    databases(home)
        .into_iter()
        .map(|db| {
            let trusted = certutil
                .as_deref()
                .and_then(|c| listed(c, &db, &nick))
                .is_some_and(|pem| trust::same_cert(&pem, ca.der.as_deref()));
            let fix = Some(if certutil.is_some() { "agentfs trust".to_owned() } else { NO_CERTUTIL.to_owned() });
            Place { what: db.shown(), store: db.dir, trusted, fix }
        })
        .collect()
}
