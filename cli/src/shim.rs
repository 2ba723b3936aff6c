//! The shim travels inside the `agentfs` binary and is written out on first
//! use to `$AGENTFS_HOME/lib/<content hash>/`, an absolute path the dynamic
//! loader accepts. `AGENTFS_SHIM` points elsewhere (a shim built by hand).
//! A file we extract ourselves is never quarantined (macOS).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use agentfs_registry::home::ensure_private_dir;
use agentfs_registry::names::fnv1a64;
use agentfs_registry::{Home, atomic, env};

/// The shim library this binary was built with.
pub static EMBEDDED: &[u8] = include_bytes!(env!("AGENTFS_SHIM_BUILT"));
/// Its file name (`libagentfs_shim.so` / `.dylib`).
pub const FILE: &str = env!("AGENTFS_SHIM_FILE");

/// The variable the dynamic loader reads.
pub const PRELOAD_VAR: &str = if cfg!(target_vendor = "apple") { "DYLD_INSERT_LIBRARIES" } else { "LD_PRELOAD" };

/// The shim to load: `$AGENTFS_SHIM`, else the embedded one, extracted.
pub fn path(home: &Home) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env::SHIM).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_absolute() || !p.is_file() {
            bail!("{}={} is not an absolute path to a file; unset it to use the built-in shim", env::SHIM, p.display());
        }
        return Ok(p);
    }
    extract(home)
}

/// Writes the embedded shim under `lib/<hash>/` unless it is there already.
pub fn extract(home: &Home) -> Result<PathBuf> {
    let dir = home.lib_dir().join(format!("{:016x}", fnv1a64(EMBEDDED)));
    let file = dir.join(FILE);
    if fs::metadata(&file).is_ok_and(|m| m.len() == EMBEDDED.len() as u64) {
        return Ok(file);
    }
    home.ensure()?;
    ensure_private_dir(&home.lib_dir())?;
    ensure_private_dir(&dir)?;
    write_library(&file).with_context(|| format!("cannot write the shim to {}", file.display()))?;
    Ok(file)
}

fn write_library(file: &Path) -> io::Result<()> {
    atomic::write(file, EMBEDDED)?;
    fs::set_permissions(file, fs::Permissions::from_mode(0o755))
}

/// `LD_PRELOAD` with the shim first and the other existing entries after it
/// (any agentfs shim among them — another version's — is dropped: two would
/// both convert).
pub fn preload_value(shim: &Path, existing: Option<&std::ffi::OsStr>) -> std::ffi::OsString {
    let others = existing
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|p| !p.as_os_str().is_empty() && p.file_name() != Some(std::ffi::OsStr::new(FILE)));
    std::env::join_paths(std::iter::once(shim.to_owned()).chain(others)).unwrap_or_else(|_| shim.as_os_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentfs_registry::testutil::TempDir;

    #[test]
    fn extracts_once_by_content_hash() {
        let t = TempDir::new("shim");
        let home = Home::at(t.path().join("home")).unwrap();
        let p = extract(&home).unwrap();
        assert!(p.is_absolute() && p.ends_with(FILE));
        assert_eq!(fs::read(&p).unwrap(), EMBEDDED);
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o755);
        let again = extract(&home).unwrap();
        assert_eq!(p, again);
    }

    #[test]
    fn preload_is_prepended_once() {
        let shim = PathBuf::from(format!("/h/lib/x/{FILE}"));
        let first = |rest: &str| format!("{}{rest}", shim.display());
        assert_eq!(preload_value(&shim, None), shim.as_os_str());
        assert_eq!(preload_value(&shim, Some("/a.so".as_ref())), first(":/a.so").as_str());
        let with_ours = format!("/a.so:{}", shim.display());
        assert_eq!(preload_value(&shim, Some(with_ours.as_ref())), first(":/a.so").as_str());
        let other_version = format!("/a.so:/h/lib/y/{FILE}");
        assert_eq!(preload_value(&shim, Some(other_version.as_ref())), first(":/a.so").as_str(), "one shim only");
    }
}
