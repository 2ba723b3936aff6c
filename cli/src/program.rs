//! Can the shim enter a program? A statically linked executable (musl
//! static builds) ignores LD_PRELOAD, a Go program on Linux bypasses libc and an arm64e-only one is
//! killed by it, so `wrap` falls back to PORT injection for them. Scripts
//! are judged by their interpreter (`#!/usr/bin/env node` → node).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

use agentfs_registry::binary::{self, Binary};

/// The program and the chain of interpreters it runs through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every file in the chain: the command, then its interpreters.
    pub chain: Vec<PathBuf>,
    /// The kind of the last one (the one that actually runs).
    pub kind: Binary,
}

/// Finds `cmd` on `PATH` (or as given when it contains a `/`).
pub fn which(cmd: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let p = Path::new(cmd);
    if cmd.as_encoded_bytes().contains(&b'/') {
        return is_executable(p).then(|| p.to_owned());
    }
    std::env::split_paths(path_var?).map(|dir| dir.join(cmd)).find(|c| is_executable(c))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Follows shebangs (at most 4 deep) and classifies the final program.
pub fn resolve(cmd: &OsStr, path_var: Option<&OsStr>) -> Option<Resolved> {
    let mut chain = vec![which(cmd, path_var)?];
    for _ in 0..4 {
        let current = chain.last()?.clone();
        match interpreter(&current, path_var) {
            Some(next) if !chain.contains(&next) => chain.push(next),
            _ => {
                let kind = binary_kind(&current);
                return Some(Resolved { chain, kind });
            }
        }
    }
    Some(Resolved { kind: Binary::Other, chain })
}

/// The interpreter a `#!` line runs, with `/usr/bin/env X` resolved to X.
pub fn interpreter(script: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    let interp = PathBuf::from(words.next()?);
    if interp.file_name() != Some(OsStr::new("env")) {
        return Some(interp);
    }
    // `env [-S] [VAR=value...] prog`: the first word that is neither.
    let prog = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
    which(&OsString::from(prog), path_var)
}

/// Classifies a file by its headers (Go programs by their build info).
pub fn binary_kind(path: &Path) -> Binary {
    binary::classify_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentfs_registry::testutil::TempDir;

    #[test]
    fn system_binaries_are_dynamic() {
        let path = std::env::var_os("PATH");
        let sh = resolve(OsStr::new("sh"), path.as_deref()).unwrap();
        assert_eq!(sh.kind, Binary::ElfDynamic);
        assert!(resolve(OsStr::new("definitely-not-a-command-xyz"), path.as_deref()).is_none());
    }

    #[test]
    fn shebangs_through_env_resolve_to_the_interpreter() {
        let t = TempDir::new("prog");
        let script = t.path().join("tool");
        std::fs::write(&script, "#!/usr/bin/env -S FOO=1 sh -e\necho hi\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::var_os("PATH");
        let r = resolve(script.as_os_str(), path.as_deref()).unwrap();
        assert_eq!(r.chain.len(), 2, "{r:?}");
        assert!(r.chain[1].ends_with("sh"));
        assert_eq!(r.kind, Binary::ElfDynamic);
    }
}
