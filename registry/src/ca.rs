//! The local certificate authority behind `https://…localhost`: an ECDSA
//! P-256 root (10 years) in `$AGENTFS_HOME/ca/` (`root.pem`, `root.key` mode
//! 0600, the directory 0700, both written atomically), and exact-name leaf
//! certificates for the hosts the router serves (browsers and curl refuse a
//! `*.localhost` wildcard: one label is a TLD), valid 800 days (macOS takes
//! at most 825), kept in `ca/hosts/` so that a router restart re-serves them.
//!
//! A CA that is there but unreadable (corrupt, half there, another user's)
//! is an error naming the file and the fix; it is never replaced silently,
//! since a new root would undo `agentfs trust`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use crate::atomic;
use crate::home::{self, Home, HomeError};
use crate::safefile::{self, SafeReadError};

/// How long the root is valid.
pub const ROOT_DAYS: u64 = 3650;
/// How long a leaf is valid (macOS refuses more than 825 days).
pub const LEAF_DAYS: u64 = 800;
/// A cached leaf older than this is issued anew.
pub const LEAF_RENEW_DAYS: u64 = 700;
/// Leaf files kept in `ca/hosts/`; beyond, the oldest are removed (the
/// router issues only for hosts it routes, so this is years of instances).
pub const HOSTS_CAP: usize = 1024;
/// The largest CA or leaf file read.
const FILE_CAP: u64 = 64 * 1024;
const DAY: Duration = Duration::from_secs(86_400);

/// Why the CA cannot be used, each naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Dir(#[from] HomeError),
    #[error("{} is not a valid CA file ({why}); fix: move root.pem and root.key out of {} (agentfs makes a new CA), then run `agentfs trust` again", .path.display(), .path.parent().unwrap_or(Path::new(".")).display())]
    Corrupt { path: PathBuf, why: String },
    #[error("{} {why}; fix: chown $(id -u) {} && chmod 600 {}, or move it away", .path.display(), .path.display(), .path.display())]
    Unsafe { path: PathBuf, why: SafeReadError },
    #[error("cannot write {}: {source}; fix the permissions of {}", .path.display(), .path.parent().unwrap_or(Path::new(".")).display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot issue a certificate for {host:?}: {why}")]
    Issue { host: String, why: String },
}

/// `$AGENTFS_HOME/ca`.
pub fn dir(home: &Home) -> PathBuf {
    home.root().join("ca")
}

/// `ca/root.pem`: what `agentfs trust` installs and `NODE_EXTRA_CA_CERTS` names.
pub fn root_pem(home: &Home) -> PathBuf {
    dir(home).join("root.pem")
}

/// `ca/root.key`.
pub fn root_key(home: &Home) -> PathBuf {
    dir(home).join("root.key")
}

/// A leaf: its certificate and PKCS#8 key, in PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The loaded root: signs leaves.
pub struct Authority {
    cert_pem: String,
    id: String,
    issuer: Issuer<'static, KeyPair>,
    hosts: PathBuf,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Authority {
    /// Loads the CA of `home`, creating it (and `ca/`) if neither file is there.
    pub fn load_or_create(home: &Home) -> Result<Authority, CaError> {
        home.ensure()?;
        home::ensure_private_dir(&dir(home))?;
        match Authority::read(home)? {
            Some(ca) => Ok(ca),
            None => Authority::create(&dir(home)),
        }
    }

    /// Loads the CA if it exists (`Ok(None)` if it does not), creating nothing.
    pub fn load(home: &Home) -> Result<Option<Authority>, CaError> {
        if !dir(home).exists() {
            return Ok(None);
        }
        home::check_private_dir(&dir(home))?;
        Authority::read(home)
    }

    /// Both files, neither (`None`), or an error naming the one missing.
    fn read(home: &Home) -> Result<Option<Authority>, CaError> {
        let (pem, key) = (root_pem(home), root_key(home));
        let missing =
            |path: PathBuf, other: &str| CaError::Corrupt { path, why: format!("missing while {other} is there") };
        match (read(&pem)?, read(&key)?) {
            (Some(cert), Some(key_bytes)) => Authority::parse(&dir(home), &cert, &key_bytes, &key, &pem).map(Some),
            (None, None) => Ok(None),
            (Some(_), None) => Err(missing(key, "root.pem")),
            (None, Some(_)) => Err(missing(pem, "root.key")),
        }
    }

    fn parse(dir: &Path, cert: &[u8], key: &[u8], key_path: &Path, pem_path: &Path) -> Result<Authority, CaError> {
        let corrupt = |path: &Path, why: String| CaError::Corrupt { path: path.to_owned(), why };
        let key_text = std::str::from_utf8(key).map_err(|_| corrupt(key_path, "not text".into()))?;
        let pair = KeyPair::from_pem(key_text).map_err(|e| corrupt(key_path, format!("not a PEM private key: {e}")))?;
        let cert_pem = String::from_utf8(cert.to_vec()).map_err(|_| corrupt(pem_path, "not text".into()))?;
        let der = pem_body(&cert_pem, "CERTIFICATE").ok_or_else(|| corrupt(pem_path, "no PEM certificate".into()))?;
        if !contains(&der, pair.public_key_raw()) {
            return Err(corrupt(pem_path, "its public key is not the one of root.key".into()));
        }
        Ok(Authority::from_parts(dir, cert_pem, pair))
    }

    fn create(dir: &Path) -> Result<Authority, CaError> {
        let fail = |why: rcgen::Error| CaError::Issue { host: "the root".into(), why: why.to_string() };
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(fail)?;
        let mut params = root_params(&key_id(&pair));
        let now = SystemTime::now();
        params.not_before = date(now - DAY);
        params.not_after = date(now + DAY * ROOT_DAYS as u32);
        let cert = params.self_signed(&pair).map_err(fail)?;
        let _ = fs::remove_dir_all(dir.join("hosts"));
        let write =
            |path: PathBuf, bytes: &[u8]| atomic::write(&path, bytes).map_err(|source| CaError::Write { path, source });
        write(dir.join("root.key"), pair.serialize_pem().as_bytes())?;
        write(dir.join("root.pem"), cert.pem().as_bytes())?;
        Ok(Authority::from_parts(dir, cert.pem(), pair))
    }

    fn from_parts(dir: &Path, cert_pem: String, pair: KeyPair) -> Authority {
        let id = key_id(&pair);
        let issuer = Issuer::new(root_params(&id), pair);
        Authority { cert_pem, id, issuer, hosts: dir.join("hosts") }
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A short id of the root's key, in its name (`agentfs CA <id>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A new leaf for exactly `host` (no wildcard), signed by the root.
    pub fn issue(&self, host: &str) -> Result<Leaf, CaError> {
        let fail = |why: String| CaError::Issue { host: host.to_owned(), why };
        if !is_host(host) {
            return Err(fail("not a host name".into()));
        }
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail(e.to_string()))?;
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(|e| fail(e.to_string()))?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        let now = SystemTime::now();
        params.not_before = date(now - DAY);
        params.not_after = date(now + DAY * (LEAF_DAYS - 1) as u32);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&pair, &self.issuer).map_err(|e| fail(e.to_string()))?;
        Ok(Leaf { cert_pem: cert.pem(), key_pem: pair.serialize_pem() })
    }

    /// The leaf of `host` from `ca/hosts/` if it is younger than
    /// [`LEAF_RENEW_DAYS`], else a new one, stored there.
    pub fn leaf(&self, host: &str) -> Result<Leaf, CaError> {
        if !is_host(host) {
            return Err(CaError::Issue { host: host.to_owned(), why: "not a host name".into() });
        }
        let path = self.hosts.join(format!("{host}.{}.pem", self.id));
        if let Some(leaf) = cached(&path) {
            return Ok(leaf);
        }
        let leaf = self.issue(host)?;
        home::ensure_private_dir(&self.hosts)?;
        let bytes = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        atomic::write(&path, bytes.as_bytes()).map_err(|source| CaError::Write { path, source })?;
        prune(&self.hosts, HOSTS_CAP);
        Ok(leaf)
    }
}

/// Removes the oldest files of `dir` beyond `cap` (best effort).
fn prune(dir: &Path, cap: usize) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut files: Vec<(SystemTime, PathBuf)> =
        entries.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
    if files.len() <= cap {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - cap] {
        let _ = fs::remove_file(path);
    }
}

/// The root's name and uses; the same on every load, so that [`Issuer`]
/// signs with the subject and key id the stored `root.pem` has.
fn root_params(id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "agentfs");
    params.distinguished_name.push(DnType::CommonName, format!("agentfs CA {id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// FNV-1a of the public key, 8 hex digits: tells two homes' roots apart in a
/// trust store, and is stable across Rust versions (unlike `DefaultHasher`).
fn key_id(pair: &KeyPair) -> String {
    let hash = pair.public_key_raw().iter().fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

fn date(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A file's bytes; `None` if it is not there; other failures name the fix.
fn read(path: &Path) -> Result<Option<Vec<u8>>, CaError> {
    match safefile::read_small(path, FILE_CAP) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(why) => Err(CaError::Unsafe { path: path.to_owned(), why }),
    }
}

fn cached(path: &Path) -> Option<Leaf> {
    let age = fs::symlink_metadata(path).ok()?.modified().ok()?.elapsed().unwrap_or_default();
    if age > DAY * LEAF_RENEW_DAYS as u32 {
        return None;
    }
    let text = String::from_utf8(safefile::read_small(path, FILE_CAP).ok()?).ok()?;
    let split = text.find("-----BEGIN PRIVATE KEY-----")?;
    let (cert, key) = text.split_at(split);
    pem_body(cert, "CERTIFICATE")?;
    Some(Leaf { cert_pem: cert.to_owned(), key_pem: key.to_owned() })
}

/// Host names we issue for: dot-separated `[a-z0-9-]` labels.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The DER inside the first PEM block of `label`.
pub fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    base64_decode(&text[start..stop])
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
