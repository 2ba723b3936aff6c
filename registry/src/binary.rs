//! What kind of executable a file is, from its first bytes: whether the
//! shim can be loaded into it. A statically linked ELF (Go, musl) ignores
//! `LD_PRELOAD`; an arm64e-only Mach-O is killed by dyld when given an arm64
//! dylib. Used by the shim's exec hooks and by `agentfs wrap`/`doctor`.

/// Bytes worth reading: ELF program headers and a fat Mach-O's arch table.
pub const HEAD_LEN: usize = 4096;

/// An executable's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// ELF with an interpreter (PT_INTERP): takes LD_PRELOAD.
    ElfDynamic,
    /// ELF without one: LD_PRELOAD is ignored.
    ElfStatic,
    /// Mach-O (thin or fat), with the architectures it has slices for.
    MachO { arm64: bool, arm64e: bool, x86_64: bool },
    /// `#!` script.
    Script,
    /// Anything else (text without a shebang, unreadable, truncated).
    Other,
}

impl Binary {
    /// Whether the shim cannot be loaded into it on this machine.
    pub fn refuses_shim(self) -> bool {
        self.refuses_shim_on(cfg!(target_arch = "aarch64"))
    }

    /// Whether the shim cannot be loaded into it on an arm64 (`true`) or
    /// x86_64 machine. Apple Silicon runs the arm64e slice of a binary that
    /// has one and no arm64 slice, and kills an arm64e process given an
    /// arm64 dylib; we ship no arm64e slice.
    pub fn refuses_shim_on(self, aarch64: bool) -> bool {
        match self {
            Binary::ElfStatic => true,
            Binary::MachO { arm64, arm64e, .. } if aarch64 => arm64e && !arm64,
            _ => false,
        }
    }
}

/// Classifies a file from its first [`HEAD_LEN`] bytes.
pub fn classify(head: &[u8]) -> Binary {
    if head.starts_with(b"#!") {
        return Binary::Script;
    }
    if head.starts_with(b"\x7fELF") {
        return elf(head).unwrap_or(Binary::Other);
    }
    macho(head).unwrap_or(Binary::Other)
}

struct Reader<'a> {
    b: &'a [u8],
    le: bool,
}

impl Reader<'_> {
    fn u16(&self, o: usize) -> Option<u64> {
        let s: [u8; 2] = self.b.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if self.le { u16::from_le_bytes(s) } else { u16::from_be_bytes(s) }))
    }
    fn u32(&self, o: usize) -> Option<u64> {
        let s: [u8; 4] = self.b.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if self.le { u32::from_le_bytes(s) } else { u32::from_be_bytes(s) }))
    }
    fn u64(&self, o: usize) -> Option<u64> {
        let s: [u8; 8] = self.b.get(o..o + 8)?.try_into().ok()?;
        Some(if self.le { u64::from_le_bytes(s) } else { u64::from_be_bytes(s) })
    }
}

fn elf(b: &[u8]) -> Option<Binary> {
    let r = Reader { b, le: *b.get(5)? == 1 };
    let (phoff, phentsize, phnum) = if *b.get(4)? == 2 {
        (r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
    } else {
        (r.u32(0x1c)?, r.u16(0x2a)?, r.u16(0x2c)?)
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if r.u32(at)? == PT_INTERP {
            return Some(Binary::ElfDynamic);
        }
    }
    Some(Binary::ElfStatic)
}

const CPU_TYPE_ARM64: u64 = 0x0100_000c;
const CPU_TYPE_X86_64: u64 = 0x0100_0007;
const CPU_SUBTYPE_ARM64E: u64 = 2;
const CPU_SUBTYPE_MASK: u64 = 0xff00_0000;

/// Adds one slice's architecture to a Mach-O's set.
fn add_slice(b: &mut Binary, cputype: u64, subtype: u64) {
    if let Binary::MachO { arm64, arm64e, x86_64 } = b {
        match cputype {
            CPU_TYPE_ARM64 if subtype & !CPU_SUBTYPE_MASK == CPU_SUBTYPE_ARM64E => *arm64e = true,
            CPU_TYPE_ARM64 => *arm64 = true,
            CPU_TYPE_X86_64 => *x86_64 = true,
            _ => {}
        }
    }
}

fn macho(b: &[u8]) -> Option<Binary> {
    let magic = Reader { b, le: false }.u32(0)?;
    match magic {
        // Thin, either byte order (MH_MAGIC(_64) / MH_CIGAM(_64)).
        0xfeed_face | 0xfeed_facf | 0xcefa_edfe | 0xcffa_edfe => {
            let r = Reader { b, le: magic == 0xcefa_edfe || magic == 0xcffa_edfe };
            let mut m = Binary::MachO { arm64: false, arm64e: false, x86_64: false };
            add_slice(&mut m, r.u32(4)?, r.u32(8)?);
            Some(m)
        }
        // Fat (big-endian header; FAT_MAGIC_64 entries are 32 bytes).
        0xcafe_babe | 0xcafe_babf => {
            let r = Reader { b, le: false };
            let n = r.u32(4)?;
            if n == 0 || n > 32 {
                return None; // also Java class files, which share the magic
            }
            let size = if magic == 0xcafe_babf { 32 } else { 20 };
            let mut m = Binary::MachO { arm64: false, arm64e: false, x86_64: false };
            for i in 0..n as usize {
                let at = 8 + i * size;
                add_slice(&mut m, r.u32(at)?, r.u32(at + 4)?);
            }
            Some(m)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf64(program_headers: &[u32]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
        for t in program_headers {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            h.extend(ph);
        }
        h
    }

    #[test]
    fn elf_static_and_dynamic() {
        assert_eq!(classify(&elf64(&[1, 1])), Binary::ElfStatic);
        assert_eq!(classify(&elf64(&[6, 3, 1])), Binary::ElfDynamic);
        assert_eq!(classify(b"\x7fELF"), Binary::Other, "truncated");
        assert!(Binary::ElfStatic.refuses_shim() && !Binary::ElfDynamic.refuses_shim());
    }

    #[test]
    fn this_systems_shell_is_dynamic() {
        let head = std::fs::read("/bin/sh").unwrap_or_default();
        if cfg!(target_os = "linux") {
            assert_eq!(classify(&head[..HEAD_LEN.min(head.len())]), Binary::ElfDynamic);
        }
    }

    #[test]
    fn macho_thin_and_fat() {
        let thin = |cpu: u32, sub: u32| {
            let mut h = 0xfeed_facfu32.to_le_bytes().to_vec();
            h.extend(cpu.to_le_bytes());
            h.extend(sub.to_le_bytes());
            h
        };
        let arm64 = Binary::MachO { arm64: true, arm64e: false, x86_64: false };
        let arm64e = Binary::MachO { arm64: false, arm64e: true, x86_64: false };
        assert_eq!(classify(&thin(0x0100_000c, 0)), arm64);
        assert_eq!(classify(&thin(0x0100_000c, 0x8000_0002)), arm64e);
        assert_eq!(classify(&thin(0x0100_0007, 3)), Binary::MachO { arm64: false, arm64e: false, x86_64: true });
        assert!(arm64e.refuses_shim_on(true) && !arm64.refuses_shim_on(true) && !arm64e.refuses_shim_on(false));
        let fat = |archs: &[(u32, u32)]| {
            let mut h = 0xcafe_babeu32.to_be_bytes().to_vec();
            h.extend((archs.len() as u32).to_be_bytes());
            for (cpu, sub) in archs {
                h.extend(cpu.to_be_bytes());
                h.extend(sub.to_be_bytes());
                h.extend([0u8; 12]);
            }
            h
        };
        let system = classify(&fat(&[(0x0100_0007, 3), (0x0100_000c, 0x8000_0002)]));
        assert_eq!(system, Binary::MachO { arm64: false, arm64e: true, x86_64: true });
        assert!(system.refuses_shim_on(true), "Apple Silicon runs the arm64e slice");
        assert!(!system.refuses_shim_on(false), "an Intel Mac runs the x86_64 slice");
        let universal = classify(&fat(&[(0x0100_0007, 3), (0x0100_000c, 0), (0x0100_000c, 0x8000_0002)]));
        assert!(!universal.refuses_shim_on(true), "an arm64 slice is there too");
        assert_eq!(classify(&fat(&[]).into_iter().chain([0; 8]).collect::<Vec<_>>()), Binary::Other);
    }

    #[test]
    fn scripts_and_text() {
        assert_eq!(classify(b"#!/bin/sh\n"), Binary::Script);
        assert_eq!(classify(b"echo hi\n"), Binary::Other);
        assert_eq!(classify(b""), Binary::Other);
    }
}
