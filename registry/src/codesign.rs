//! A macOS program's code signature, read straight from its Mach-O file:
//! does it run with the hardened runtime, and which of the two entitlements
//! that matter to an inserted library does it have? A hardened program that
//! allows DYLD variables but not unsigned libraries is *killed* by dyld when
//! given the (ad-hoc signed) shim, so launches drop the shim for it; one that
//! does not allow DYLD variables just runs without it.
//! Layout: Mach-O header → LC_CODE_SIGNATURE → SuperBlob (big-endian) →
//! CodeDirectory flags and the entitlements plist (Apple's cs_blobs.h).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What a signature says about loading the shim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeSign {
    /// CS_RUNTIME: the hardened runtime.
    pub hardened: bool,
    /// CS_RESTRICT: DYLD variables are ignored.
    pub restricted: bool,
    /// `com.apple.security.cs.allow-dyld-environment-variables`.
    pub allow_dyld_env: bool,
    /// `com.apple.security.cs.disable-library-validation`.
    pub disable_library_validation: bool,
}

impl CodeSign {
    /// dyld will not load an inserted library at all (and deletes the variable).
    pub fn ignores_dyld_env(&self) -> bool {
        self.restricted || (self.hardened && !self.allow_dyld_env)
    }

    /// dyld would try to load the ad-hoc-signed shim and kill the process.
    pub fn kills_with_shim(&self) -> bool {
        self.hardened && self.allow_dyld_env && !self.disable_library_validation
    }
}

const CS_RUNTIME: u32 = 0x1_0000;
const CS_RESTRICT: u32 = 0x800;
const LC_CODE_SIGNATURE: u32 = 0x1d;
const SUPERBLOB: u32 = 0xfade_0cc0;
const CODE_DIRECTORY: u32 = 0xfade_0c02;
const ENTITLEMENTS: u32 = 0xfade_7171;
const MAX_BLOB: usize = 1 << 20;

/// Reads the signature of the slice this machine would run.
pub fn read(path: &Path) -> Option<CodeSign> {
    let mut f = File::open(path).ok()?;
    parse(&mut |off, len| {
        f.seek(SeekFrom::Start(off)).ok()?;
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).ok()?;
        Some(buf)
    })
}

/// Parses through `read_at(offset, len)`; `None` when unsigned or unreadable.
pub fn parse(read_at: &mut dyn FnMut(u64, usize) -> Option<Vec<u8>>) -> Option<CodeSign> {
    let start = slice_offset(read_at)?;
    let head = read_at(start, 32)?;
    let le32 = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let magic = le32(&head, 0)?;
    let header_len = match magic {
        0xfeed_facf => 32,
        0xfeed_face => 28,
        _ => return None,
    };
    let (ncmds, sizeofcmds) = (le32(&head, 16)?, le32(&head, 20)? as usize);
    let cmds = read_at(start + header_len, sizeofcmds.min(MAX_BLOB))?;
    let mut at = 0usize;
    for _ in 0..ncmds {
        let (cmd, size) = (le32(&cmds, at)?, le32(&cmds, at + 4)? as usize);
        if cmd == LC_CODE_SIGNATURE {
            let (off, len) = (le32(&cmds, at + 8)?, le32(&cmds, at + 12)? as usize);
            return superblob(&read_at(start + u64::from(off), len.min(MAX_BLOB))?);
        }
        if size < 8 {
            return None;
        }
        at += size;
    }
    None
}

/// Offset of the slice to judge: the file itself, or in a fat file the
/// slice this machine runs (arm64e before arm64 on Apple Silicon).
fn slice_offset(read_at: &mut dyn FnMut(u64, usize) -> Option<Vec<u8>>) -> Option<u64> {
    let head = read_at(0, 8)?;
    let be32 = |b: &[u8], o: usize| Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?));
    if be32(&head, 0)? != 0xcafe_babe {
        return Some(0);
    }
    let n = (be32(&head, 4)? as usize).min(32);
    let table = read_at(8, n * 20)?;
    let mut best: Option<(u8, u64)> = None;
    for i in 0..n {
        let (cpu, sub, off) = (be32(&table, i * 20)?, be32(&table, i * 20 + 4)?, be32(&table, i * 20 + 8)?);
        let rank = match (cpu, sub & 0x00ff_ffff) {
            (0x0100_000c, 2) if cfg!(target_arch = "aarch64") => 3,
            (0x0100_000c, _) if cfg!(target_arch = "aarch64") => 2,
            (0x0100_0007, _) if !cfg!(target_arch = "aarch64") => 2,
            _ => 1,
        };
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, u64::from(off)));
        }
    }
    best.map(|(_, off)| off)
}

fn superblob(b: &[u8]) -> Option<CodeSign> {
    let be32 = |o: usize| Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?));
    if be32(0)? != SUPERBLOB {
        return None;
    }
    let mut sign = CodeSign::default();
    for i in 0..(be32(8)? as usize).min(64) {
        let off = be32(12 + i * 8 + 4)? as usize;
        match be32(off)? {
            CODE_DIRECTORY => {
                let flags = be32(off + 12)?;
                sign.hardened |= flags & CS_RUNTIME != 0;
                sign.restricted |= flags & CS_RESTRICT != 0;
            }
            ENTITLEMENTS => {
                let len = (be32(off + 4)? as usize).min(b.len() - off);
                let xml = String::from_utf8_lossy(b.get(off + 8..off + len)?);
                sign.allow_dyld_env |= entitled(&xml, "com.apple.security.cs.allow-dyld-environment-variables");
                sign.disable_library_validation |= entitled(&xml, "com.apple.security.cs.disable-library-validation");
            }
            _ => {}
        }
    }
    Some(sign)
}

/// `<key>name</key><true/>` in an entitlements plist.
pub fn entitled(plist: &str, name: &str) -> bool {
    let Some(at) = plist.find(&format!("<key>{name}</key>")) else { return false };
    plist[at..].split_once("</key>").is_some_and(|(_, rest)| rest.trim_start().starts_with("<true/>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thin arm64 Mach-O whose signature has `flags` and `entitlements`.
    fn signed(flags: u32, entitlements: &[&str]) -> Vec<u8> {
        let plist: String = entitlements.iter().map(|e| format!("<key>{e}</key><true/>")).collect();
        let plist = format!("<?xml version=\"1.0\"?><plist><dict>{plist}<key>x</key><false/></dict></plist>");
        let mut cd = CODE_DIRECTORY.to_be_bytes().to_vec();
        cd.extend(44u32.to_be_bytes());
        cd.extend(0x2_0400u32.to_be_bytes());
        cd.extend(flags.to_be_bytes());
        cd.resize(44, 0);
        let mut ent = ENTITLEMENTS.to_be_bytes().to_vec();
        ent.extend(((8 + plist.len()) as u32).to_be_bytes());
        ent.extend(plist.as_bytes());
        let mut sb = SUPERBLOB.to_be_bytes().to_vec();
        let header = 12 + 2 * 8;
        sb.extend(((header + cd.len() + ent.len()) as u32).to_be_bytes());
        sb.extend(2u32.to_be_bytes());
        sb.extend([0u32.to_be_bytes(), (header as u32).to_be_bytes()].concat());
        sb.extend([5u32.to_be_bytes(), ((header + cd.len()) as u32).to_be_bytes()].concat());
        sb.extend(cd);
        sb.extend(ent);
        let mut f = Vec::new();
        for v in [0xfeed_facfu32, 0x0100_000c, 0, 2, 2, 16 + 16, 0, 0] {
            f.extend(v.to_le_bytes());
        }
        f.extend([0x19u32, 16, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
        let dataoff = 32 + 32;
        f.extend([LC_CODE_SIGNATURE, 16, dataoff as u32, sb.len() as u32].iter().flat_map(|v| v.to_le_bytes()));
        f.extend(sb);
        f
    }

    fn parse_bytes(f: &[u8]) -> Option<CodeSign> {
        parse(&mut |off, len| f.get(off as usize..off as usize + len).map(<[u8]>::to_vec))
    }

    const DYLD: &str = "com.apple.security.cs.allow-dyld-environment-variables";
    const LV: &str = "com.apple.security.cs.disable-library-validation";

    #[test]
    fn official_node_takes_the_shim() {
        let s = parse_bytes(&signed(CS_RUNTIME, &[DYLD, LV])).unwrap();
        assert!(s.hardened && s.allow_dyld_env && s.disable_library_validation);
        assert!(!s.ignores_dyld_env() && !s.kills_with_shim());
    }

    #[test]
    fn hardened_without_entitlements_ignores_it_and_half_entitled_is_killed() {
        let plain = parse_bytes(&signed(CS_RUNTIME, &[])).unwrap();
        assert!(plain.ignores_dyld_env() && !plain.kills_with_shim());
        let half = parse_bytes(&signed(CS_RUNTIME, &[DYLD])).unwrap();
        assert!(half.kills_with_shim(), "library validation rejects the ad-hoc shim: dyld aborts");
        let adhoc = parse_bytes(&signed(0x2_0002, &[])).unwrap();
        assert!(!adhoc.hardened && !adhoc.ignores_dyld_env() && !adhoc.kills_with_shim(), "Homebrew builds");
        assert!(parse_bytes(&signed(CS_RESTRICT, &[])).unwrap().ignores_dyld_env());
    }

    #[test]
    fn unsigned_and_foreign_files() {
        assert_eq!(parse_bytes(b"#!/bin/sh\n"), None);
        assert_eq!(parse_bytes(&[]), None);
        let mut bad = signed(CS_RUNTIME, &[]);
        bad.truncate(80);
        assert_eq!(parse_bytes(&bad), None);
        assert!(!entitled("<key>a</key> <false/>", "a"));
        assert!(entitled("<key>a</key>\n\t<true/>", "a"));
    }
}
