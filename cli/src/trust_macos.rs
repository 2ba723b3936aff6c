//! `agentfs trust` on macOS: the login keychain
//! (`~/Library/Keychains/login.keychain-db`, `$HOME` respected) with
//! `security add-trusted-cert -r trustRoot` (Safari, Chrome, curl and most
//! programs read it; macOS asks for the user's password), and with
//! `--system` the System keychain, which needs sudo. Removal takes the trust
//! setting away (`remove-trusted-cert`) and deletes exactly our certificate
//! by its SHA-1 (`delete-certificate -Z`), found by its label and checked
//! against `root.pem` byte for byte. Firefox on macOS keeps its own NSS
//! store; it trusts the keychain's roots when `security.enterprise_roots`
//! is on (its default on macOS).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;

use crate::trust::{self, Ca, Place, SystemMode};

const SYSTEM_KEYCHAIN: &str = "/Library/Keychains/System.keychain";

fn login_keychain() -> Result<PathBuf> {
    Ok(trust::user_home()?.join("Library/Keychains/login.keychain-db"))
}

/// The subject common name of the CA of key id `id` (its keychain label).
fn label(id: &str) -> String {
    format!("agentfs CA {id}")
}

/// Whether a tool run succeeds (exit 0), its output ignored.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn security() -> Command {
    Command::new("/usr/bin/security")
}

/// The SHA-1 (hex, as `security` prints it) of each certificate of `keychain`
/// labelled like an agentfs CA of `id` whose PEM is the CA's.
fn ours_in(keychain: &Path, id: &str, der: Option<&[u8]>) -> Vec<String> {
    let mut cmd = security();
    cmd.args(["find-certificate", "-a", "-Z", "-p", "-c", &label(id)]).arg(keychain);
    let Ok(text) = trust::output(&mut cmd) else { return Vec::new() };
    let (mut found, mut sha1, mut pem) = (Vec::new(), None::<String>, None::<String>);
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("SHA-1 hash:") {
            sha1 = Some(h.trim().to_owned());
        } else if line.starts_with("-----BEGIN CERTIFICATE-----") {
            pem = Some(format!("{line}\n"));
        } else if let Some(p) = pem.as_mut() {
            p.push_str(line);
            p.push('\n');
            if line.starts_with("-----END CERTIFICATE-----") {
                let matches = der.is_none() || trust::same_cert(p, der);
                if let (true, Some(h)) = (matches, sha1.take()) {
                    found.push(h);
                }
                pem = None;
            }
        }
    }
    found
}

/// The CA verifies as a trusted root for TLS (local trust settings only).
fn verifies(ca: &Ca) -> bool {
    succeeds(security().args(["verify-cert", "-q", "-L", "-l", "-p", "ssl", "-c"]).arg(&ca.pem))
}

pub fn add(ca: &Ca, mode: SystemMode) -> Result<bool> {
    let login = login_keychain()?;
    let mut complete = add_to(ca, &login, false);
    let system = Path::new(SYSTEM_KEYCHAIN);
    match mode {
        SystemMode::Never => {}
        _ if !ours_in(system, ca.id(), ca.der.as_deref()).is_empty() => {
            println!("agentfs: the CA is already in {SYSTEM_KEYCHAIN}");
        }
        _ if trust::is_root() => complete &= add_to(ca, system, true),
        SystemMode::Always => {
            println!("agentfs: the System keychain needs root; run:");
            println!("  sudo {}", trust::shown(&add_cmd(ca, system, true)));
            complete = false;
        }
        SystemMode::Auto => {}
    }
    Ok(complete)
}

fn add_cmd(ca: &Ca, keychain: &Path, admin: bool) -> Command {
    let mut cmd = security();
    cmd.arg("add-trusted-cert");
    if admin {
        cmd.arg("-d");
    }
    cmd.args(["-r", "trustRoot", "-k"]).arg(keychain).arg(&ca.pem);
    cmd
}

fn add_to(ca: &Ca, keychain: &Path, admin: bool) -> bool {
    if !ours_in(keychain, ca.id(), ca.der.as_deref()).is_empty() && verifies(ca) {
        println!("agentfs: the CA is already trusted in {}", keychain.display());
        return true;
    }
    match trust::output(&mut add_cmd(ca, keychain, admin)) {
        Ok(_) => {
            println!("agentfs: added the CA to {} as a trusted root", keychain.display());
            true
        }
        Err(e) => {
            println!("agentfs: could not add the CA to {}: {e:#}", keychain.display());
            false
        }
    }
}

pub fn remove(ca: &Ca, _recorded: &[PathBuf], mode: SystemMode) -> Result<bool> {
    let mut complete = remove_from(ca, &login_keychain()?, false);
    if mode != SystemMode::Never {
        complete &= remove_from(ca, Path::new(SYSTEM_KEYCHAIN), true);
    }
    Ok(complete)
}

fn remove_from(ca: &Ca, keychain: &Path, admin: bool) -> bool {
    let hashes: Vec<String> = ca.ids.iter().flat_map(|id| ours_in(keychain, id, None)).collect();
    if hashes.is_empty() {
        return true;
    }
    let mut steps = Vec::new();
    if ca.pem.exists() {
        let mut untrust = security();
        untrust.arg("remove-trusted-cert");
        if admin {
            untrust.arg("-d");
        }
        untrust.arg(&ca.pem);
        steps.push(untrust);
    }
    for h in &hashes {
        let mut delete = security();
        delete.args(["delete-certificate", "-Z", h]).arg(keychain);
        steps.push(delete);
    }
    if admin && !trust::is_root() {
        println!("agentfs: {} needs root to undo; run:", keychain.display());
        let lines: Vec<String> = steps.iter().map(|c| format!("sudo {}", trust::shown(c))).collect();
        println!("  {}", lines.join(" && "));
        return false;
    }
    for mut step in steps {
        match trust::output(&mut step) {
            Ok(_) => println!("agentfs: ran {}", trust::shown(&step)),
            Err(e) => {
                println!("agentfs: {e:#}");
                return false;
            }
        }
    }
    true
}

pub fn places(ca: &Ca) -> Vec<Place> {
    let verified = verifies(ca);
    let mut places = Vec::new();
    for (keychain, admin) in [(login_keychain().ok(), false), (Some(PathBuf::from(SYSTEM_KEYCHAIN)), true)] {
        let Some(keychain) = keychain else { continue };
        let there = !ours_in(&keychain, ca.id(), ca.der.as_deref()).is_empty();
        let fix = if admin {
            format!("sudo {}", trust::shown(&add_cmd(ca, &keychain, true)))
        } else {
            "agentfs trust".into()
        };
        places.push(Place {
            what: format!("keychain {}", keychain.display()),
            trusted: there && verified,
            store: keychain,
            fix: Some(fix),
        });
    }
    places
}
