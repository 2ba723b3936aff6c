//! Can the shim enter a program? A statically linked executable (no
//! PT_INTERP: Go on Linux, musl static builds) ignores LD_PRELOAD, so
//! `wrap` falls back to PORT injection for it. Scripts are judged by their
//! interpreter (`#!/usr/bin/env node` → node).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a command resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A dynamically linked executable: the shim loads.
    Dynamic,
    /// A statically linked executable: the shim cannot load.
    Static,
    /// Not an ELF file we can read (a Mach-O, a text file...): assume it loads.
    Other,
}

/// The program and the chain of interpreters it runs through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every file in the chain: the command, then its interpreters.
    pub chain: Vec<PathBuf>,
    /// The kind of the last one (the one that actually runs).
    pub kind: Kind,
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
                let kind = elf_kind(&current);
                return Some(Resolved { chain, kind });
            }
        }
    }
    Some(Resolved { kind: Kind::Other, chain })
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

/// Reads an ELF header: static when no program header is PT_INTERP.
pub fn elf_kind(path: &Path) -> Kind {
    let mut buf = vec![0u8; 64 * 1024];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut buf)) else { return Kind::Other };
    elf_kind_of(&buf[..n]).unwrap_or(Kind::Other)
}

fn elf_kind_of(b: &[u8]) -> Option<Kind> {
    if b.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = *b.get(4)? == 2;
    let le = *b.get(5)? == 1;
    let u16_at = |o: usize| -> Option<u64> {
        let s: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if le { u16::from_le_bytes(s) } else { u16::from_be_bytes(s) }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if le { u32::from_le_bytes(s) } else { u32::from_be_bytes(s) }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le { u64::from_le_bytes(s) } else { u64::from_be_bytes(s) })
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?)
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        if u32_at(at)? == PT_INTERP {
            return Some(Kind::Dynamic);
        }
    }
    Some(Kind::Static)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentfs_registry::testutil::TempDir;

    #[test]
    fn system_binaries_are_dynamic() {
        let path = std::env::var_os("PATH");
        let sh = resolve(OsStr::new("sh"), path.as_deref()).unwrap();
        assert_eq!(sh.kind, Kind::Dynamic);
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
        assert_eq!(r.kind, Kind::Dynamic);
    }

    #[test]
    fn elf_headers() {
        assert_eq!(elf_kind_of(b"#!/bin/sh"), None);
        assert_eq!(elf_kind_of(b"\x7fELF"), None, "truncated");
        // A minimal 64-bit little-endian header with no program headers: static.
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        assert_eq!(elf_kind_of(&h), Some(Kind::Static));
        // One PT_INTERP program header.
        h[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&3u32.to_le_bytes());
        h.extend(ph);
        assert_eq!(elf_kind_of(&h), Some(Kind::Dynamic));
    }
}
