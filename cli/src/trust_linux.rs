//! `agentfs trust` on Linux: the user's NSS databases (`trust_nss`, no
//! sudo) and the distribution's system store, which curl, Python, Go and
//! most other programs read: Debian/Ubuntu `/usr/local/share/ca-certificates`
//! and `update-ca-certificates`, Fedora `/etc/pki/ca-trust/source/anchors`
//! and `update-ca-trust extract`, Arch `/etc/ca-certificates/trust-source/anchors`
//! and `update-ca-trust` (the directory `trust anchor --store` writes to, with
//! a file name of ours so that removal is exact). The system store needs
//! root: without it the exact sudo command line is printed instead.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::trust::{self, Ca, Place, SystemMode};
use crate::trust_nss;

/// The distribution's store: where our file goes and what refreshes it.
struct SystemStore {
    distro: &'static str,
    dir: &'static str,
    ext: &'static str,
    refresh: &'static [&'static str],
}

const STORES: [SystemStore; 3] = [
    SystemStore {
        distro: "Debian/Ubuntu",
        dir: "/usr/local/share/ca-certificates",
        ext: "crt",
        refresh: &["update-ca-certificates"],
    },
    SystemStore {
        distro: "Fedora",
        dir: "/etc/pki/ca-trust/source/anchors",
        ext: "pem",
        refresh: &["update-ca-trust", "extract"],
    },
    SystemStore {
        distro: "Arch",
        dir: "/etc/ca-certificates/trust-source/anchors",
        ext: "crt",
        refresh: &["update-ca-trust"],
    },
];

/// The store of this distribution: the first whose directory and tool exist.
fn system_store() -> Option<&'static SystemStore> {
    STORES.iter().find(|s| Path::new(s.dir).is_dir() && trust::tool(s.refresh[0]).is_some())
}

impl SystemStore {
    fn file(&self, id: &str) -> PathBuf {
        Path::new(self.dir).join(format!("agentfs-{id}.{}", self.ext))
    }

    fn refresh_cmd(&self) -> Command {
        let mut c = Command::new(trust::tool(self.refresh[0]).unwrap_or_else(|| self.refresh[0].into()));
        c.args(&self.refresh[1..]);
        c
    }

    fn sudo_add(&self, ca: &Ca) -> String {
        let (pem, file) = (ca.pem.display().to_string(), self.file(ca.id()).display().to_string());
        format!("sudo install -m 644 {} {} && sudo {}", trust::quote(&pem), trust::quote(&file), self.refresh.join(" "))
    }

    fn has(&self, ca: &Ca) -> bool {
        fs::read_to_string(self.file(ca.id())).is_ok_and(|text| trust::same_cert(&text, ca.der.as_deref()))
    }
}

/// Adds the CA to the NSS databases and, by `mode`, the system store.
pub fn add(ca: &Ca, mode: SystemMode) -> Result<bool> {
    let nss = trust_nss::add(ca, &trust::user_home()?)?;
    let system = match (mode, system_store()) {
        (SystemMode::Never, _) => true,
        (_, None) => {
            println!("agentfs: no system store known here (Debian, Fedora and Arch ones are); browsers use NSS");
            mode != SystemMode::Always
        }
        (_, Some(store)) if store.has(ca) => {
            println!("agentfs: the CA is already in the system store ({})", store.file(ca.id()).display());
            true
        }
        (_, Some(store)) if trust::is_root() => add_system(store, ca)?,
        (_, Some(store)) => {
            println!("agentfs: the {} system store (curl, Python, Go…) needs root; run:", store.distro);
            println!("  {}", store.sudo_add(ca));
            println!("  then `agentfs trust` again");
            mode != SystemMode::Always
        }
    };
    Ok(nss && system)
}

fn add_system(store: &SystemStore, ca: &Ca) -> Result<bool> {
    let file = store.file(ca.id());
    let tmp = file.with_extension("agentfs-tmp");
    fs::copy(&ca.pem, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
        .and_then(|()| fs::rename(&tmp, &file))
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("agentfs: added {} to the {} system store", file.display(), store.distro);
    refresh(store)
}

fn refresh(store: &SystemStore) -> Result<bool> {
    let mut cmd = store.refresh_cmd();
    match trust::output(&mut cmd) {
        Ok(_) => {
            println!("agentfs: ran {}", trust::shown(&cmd));
            Ok(true)
        }
        Err(e) => {
            println!("agentfs: {e:#}");
            Ok(false)
        }
    }
}

/// Removes the CA from the NSS databases and, by `mode`, the system store.
pub fn remove(ca: &Ca, recorded: &[PathBuf], mode: SystemMode) -> Result<bool> {
    let nss = trust_nss::remove(ca, &trust::user_home()?, recorded)?;
    let Some(store) = system_store().filter(|_| mode != SystemMode::Never) else { return Ok(nss) };
    let ours: Vec<PathBuf> = ca.ids.iter().map(|id| store.file(id)).filter(|f| f.exists()).collect();
    if ours.is_empty() {
        return Ok(nss);
    }
    if !trust::is_root() {
        let files: Vec<String> = ours.iter().map(|f| trust::quote(&f.display().to_string())).collect();
        println!("agentfs: the {} system store needs root to undo; run:", store.distro);
        println!("  sudo rm {} && sudo {}", files.join(" "), store.refresh.join(" "));
        return Ok(false);
    }
    for file in &ours {
        fs::remove_file(file).with_context(|| format!("cannot remove {}", file.display()))?;
        println!("agentfs: removed {} from the {} system store", file.display(), store.distro);
    }
    Ok(refresh(store)? && nss)
}

/// The NSS databases and the system store, each trusted or not.
pub fn places(ca: &Ca) -> Vec<Place> {
    let mut places = trust::user_home().map(|h| trust_nss::places(ca, &h)).unwrap_or_default();
    if let Some(store) = system_store() {
        let file = store.file(ca.id());
        let fix = if trust::is_root() { "agentfs trust".to_owned() } else { store.sudo_add(ca) };
        places.push(Place {
            what: format!("{} system store ({})", store.distro, file.display()),
            trusted: store.has(ca),
            store: file,
            fix: Some(fix),
        });
    }
    places
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sudo_line_copies_the_root_under_our_name_and_refreshes() {
        let ca = Ca { pem: "/home/u/.agentfs/ca/root.pem".into(), der: None, ids: vec!["1a2b3c4d".into()] };
        assert_eq!(
            STORES[0].sudo_add(&ca),
            "sudo install -m 644 /home/u/.agentfs/ca/root.pem /usr/local/share/ca-certificates/agentfs-1a2b3c4d.crt \
             && sudo update-ca-certificates"
        );
        assert_eq!(STORES[1].file("ab"), Path::new("/etc/pki/ca-trust/source/anchors/agentfs-ab.pem"));
    }
}
