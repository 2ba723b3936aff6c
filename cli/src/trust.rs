//! `agentfs trust [--status | --remove] [--system | --user]`: puts the local
//! CA (`$AGENTFS_HOME/ca/root.pem`, made here if absent) where browsers and
//! tools look for roots, says where it is, and takes it out again. The
//! stores themselves are per platform (`trust_linux` with `trust_nss`,
//! `trust_macos`); this file holds what they share: the CA and its names,
//! the record `ca/trusted` that turns the URLs to `https://`
//! (`agentfs_registry::trusted`), running the store tools, and the output.
//!
//! The CA is added under a name carrying its key id,
//! `agentfs local CA (<id>)` (NSS nickname) / `agentfs CA <id>` (its subject,
//! the keychain label, see `trust_macos`), and removed by that name only: another program's
//! CA, or another agentfs home's, is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};

use agentfs_registry::ca::{self, Authority};
use agentfs_registry::trusted::{self, TrustRecord};
use agentfs_registry::{Home, names};

use crate::args::TrustArgs;
#[cfg(not(target_os = "macos"))]
use crate::trust_linux as platform;
#[cfg(target_os = "macos")]
use crate::trust_macos as platform;

/// Whether the system store (or keychain) is changed too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemMode {
    /// When running as root; else the sudo command is printed.
    Auto,
    /// `--system`: required; without root the sudo command is printed and the command fails.
    Always,
    /// `--user`: never.
    Never,
}

/// The CA as the stores see it.
pub struct Ca {
    /// `ca/root.pem`.
    pub pem: PathBuf,
    /// Its DER, when the CA exists.
    pub der: Option<Vec<u8>>,
    /// Key ids to look for: the current root's first, then those recorded by
    /// an earlier `agentfs trust` (a root since replaced is still removed).
    pub ids: Vec<String>,
}

impl Ca {
    /// The current root's id.
    pub fn id(&self) -> &str {
        self.ids.first().map_or("", String::as_str)
    }
}

/// The NSS nickname of the CA of key id `id`.
pub fn nickname(id: &str) -> String {
    format!("agentfs local CA ({id})")
}

/// One place the CA can be trusted, as `--status` shows it.
pub struct Place {
    /// What and where: `NSS database /home/u/.pki/nssdb (Chrome, Chromium)`.
    pub what: String,
    /// The file or directory recorded in `ca/trusted`.
    pub store: PathBuf,
    pub trusted: bool,
    /// How to change that (shown when not trusted).
    pub fix: Option<String>,
}

pub fn run(args: &TrustArgs) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let mode = match (args.system, args.user) {
        (true, _) => SystemMode::Always,
        (_, true) => SystemMode::Never,
        _ => SystemMode::Auto,
    };
    if args.status {
        return status(&home, args.json);
    }
    if args.remove {
        return remove(&home, mode);
    }
    add(&home, mode)
}

fn add(home: &Home, mode: SystemMode) -> Result<ExitCode> {
    let authority = Authority::load_or_create(home)?;
    let ca = Ca {
        pem: ca::root_pem(home),
        der: ca::pem_body(authority.cert_pem(), "CERTIFICATE"),
        ids: vec![authority.id().to_owned()],
    };
    println!("agentfs: the CA is {} ({:?})", ca.pem.display(), nickname(ca.id()));
    let complete = platform::add(&ca, mode)?;
    let stores: Vec<PathBuf> = platform::places(&ca).into_iter().filter(|p| p.trusted).map(|p| p.store).collect();
    if stores.is_empty() {
        trusted::remove(home).with_context(|| format!("cannot remove {}", trusted::path(home).display()))?;
        bail!("the CA is trusted nowhere yet; do what the lines above say, then run `agentfs trust` again");
    }
    let record = TrustRecord { v: 1, root: root_digest(&ca.pem)?, ids: ca.ids.clone(), stores };
    trusted::write(home, &record).with_context(|| format!("cannot write {}", trusted::path(home).display()))?;
    println!(
        "agentfs: URLs are https:// from now on (recorded in {}); restart running browsers and wrapped apps",
        trusted::path(home).display()
    );
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn remove(home: &Home, mode: SystemMode) -> Result<ExitCode> {
    let record = trusted::read(home);
    let authority = Authority::load(home)?;
    let mut ids: Vec<String> = authority.iter().map(|a| a.id().to_owned()).collect();
    for id in record.iter().flat_map(|r| r.ids.iter()) {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    if ids.is_empty() {
        println!("agentfs: nothing to remove: {} has no CA and no ca/trusted record", home.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    let ca = Ca {
        pem: ca::root_pem(home),
        der: authority.as_ref().and_then(|a| ca::pem_body(a.cert_pem(), "CERTIFICATE")),
        ids,
    };
    let recorded = record.map(|r| r.stores).unwrap_or_default();
    let complete = platform::remove(&ca, &recorded, mode)?;
    trusted::remove(home).with_context(|| format!("cannot remove {}", trusted::path(home).display()))?;
    println!("agentfs: URLs are http:// again (the CA stays in {}; HTTPS still works with it)", ca.pem.display());
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn status(home: &Home, json: bool) -> Result<ExitCode> {
    let Some(authority) = Authority::load(home)? else {
        if json {
            println!("{}", serde_json::json!({"v": 1, "ca": null, "stores": [], "https": false}));
        } else {
            println!("no CA yet in {}: the router makes one, or `agentfs trust`", home.root().display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let ca = Ca {
        pem: ca::root_pem(home),
        der: ca::pem_body(authority.cert_pem(), "CERTIFICATE"),
        ids: vec![authority.id().to_owned()],
    };
    if json {
        let stores: Vec<_> = platform::places(&ca)
            .iter()
            .map(|p| serde_json::json!({"what": p.what, "store": p.store, "trusted": p.trusted, "fix": p.fix}))
            .collect();
        let https = trusted::is_trusted(home);
        let v =
            serde_json::json!({"v": 1, "ca": ca.pem, "nickname": nickname(ca.id()), "stores": stores, "https": https});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("CA {} ({:?})", ca.pem.display(), nickname(ca.id()));
    for p in platform::places(&ca) {
        match (p.trusted, &p.fix) {
            (true, _) => println!("✓ {}: trusted", p.what),
            (false, Some(fix)) => println!("✗ {}: not trusted → {fix}", p.what),
            (false, None) => println!("✗ {}: not trusted", p.what),
        }
    }
    if trusted::is_trusted(home) {
        println!("URLs: https:// ({})", trusted::path(home).display());
    } else {
        println!("URLs: http:// until `agentfs trust`");
    }
    Ok(ExitCode::SUCCESS)
}

fn root_digest(pem: &Path) -> Result<String> {
    let bytes = std::fs::read(pem).with_context(|| format!("cannot read {}", pem.display()))?;
    Ok(trusted::root_digest(&bytes))
}

/// The user's home directory: `$HOME` (tests and sandboxes point it elsewhere).
pub fn user_home() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if Path::new(&h).is_absolute() => Ok(PathBuf::from(h)),
        _ => bail!("HOME is not set to an absolute path; set it to your home directory"),
    }
}

/// Running as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `name` on `PATH`, or in the system directories root's tools live in
/// (`update-ca-certificates` is in /usr/sbin, outside most users' PATH).
#[cfg(not(target_os = "macos"))]
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    crate::program::which(std::ffi::OsStr::new(name), std::env::join_paths(dirs).ok().as_deref())
}

/// Runs a store tool to completion; its stdout, or an error with the
/// command and its first line of stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {}", shown(cmd)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_owned();
        bail!("{} failed ({}): {why}", shown(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command line as a shell would take it.
pub fn shown(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program());
    std::iter::once(program).chain(cmd.get_args()).map(|a| quote(&a.to_string_lossy())).collect::<Vec<_>>().join(" ")
}

/// `s` quoted for a POSIX shell when it needs it.
pub fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) { s.to_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Whether PEM text holds the certificate `der`.
pub fn same_cert(pem_text: &str, der: Option<&[u8]>) -> bool {
    der.is_some_and(|der| ca::pem_body(pem_text, "CERTIFICATE").is_some_and(|got| got == der))
}

/// The https URL a hint names.
pub fn https_url(origin: names::Origin, host: &str) -> String {
    names::Origin { https: true, ..origin }.url(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        assert_eq!(
            quote("/usr/local/share/ca-certificates/agentfs-1.crt"),
            "/usr/local/share/ca-certificates/agentfs-1.crt"
        );
        assert_eq!(quote("agentfs local CA (ab)"), "'agentfs local CA (ab)'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        let mut c = Command::new("/usr/bin/certutil");
        c.args(["-A", "-n", "agentfs local CA (ab)", "-t", "C,,"]);
        assert_eq!(shown(&c), "certutil -A -n 'agentfs local CA (ab)' -t C,,");
    }

    #[test]
    fn names_carry_the_key_id() {
        assert_eq!(nickname("1a2b3c4d"), "agentfs local CA (1a2b3c4d)");
        let origin = names::Origin::http(7355);
        assert_eq!(https_url(origin, "main.shop.localhost"), "https://main.shop.localhost:7355");
    }
}
