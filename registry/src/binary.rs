//! What kind of executable a file is, from its first bytes: whether the
//! shim can be loaded into it. A statically linked ELF (Go, musl) ignores
//! `LD_PRELOAD`; an arm64e-only Mach-O is killed by dyld when given an arm64
//! dylib; a Go program on Linux (even a cgo one, which loads the shim) makes
//! its socket calls as raw syscalls the shim never sees. Go is recognised by
//! its build-id note (in the first page) or, past the first bytes, by its
//! `.go.buildinfo` section: [`classify_file`] reads those with bounded reads
//! into stack buffers, so the shim's exec hook can use it without allocating.
//! Used by the shim's exec hooks and by `agentfs wrap`/`doctor`.

/// Bytes worth reading: ELF program headers and a fat Mach-O's arch table.
pub const HEAD_LEN: usize = 4096;

/// An executable's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// ELF with an interpreter (PT_INTERP): takes LD_PRELOAD.
    ElfDynamic,
    /// ELF without one: LD_PRELOAD is ignored.
    ElfStatic,
    /// A Go program (ELF): its sockets bypass libc, so the shim sees none of
    /// them, even when it loads (cgo, `dynamic`).
    ElfGo { dynamic: bool },
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
            Binary::ElfStatic | Binary::ElfGo { .. } => true,
            Binary::MachO { arm64, arm64e, .. } if aarch64 => arm64e && !arm64,
            _ => false,
        }
    }
}

/// Classifies a file from its first [`HEAD_LEN`] bytes (a Go program whose
/// build-id note lies past them counts as plain ELF: see [`classify_file`]).
pub fn classify(head: &[u8]) -> Binary {
    classify_file(head, |_, _| 0)
}

/// Classifies a file from its first bytes and, for an ELF file that may be
/// Go, a few bounded reads at offsets: `read_at(offset, buf)` fills `buf`
/// from the file and returns how many bytes it read (0 on error). Allocates
/// nothing.
pub fn classify_file(head: &[u8], mut read_at: impl FnMut(u64, &mut [u8]) -> usize) -> Binary {
    if head.starts_with(b"#!") {
        return Binary::Script;
    }
    if head.starts_with(b"\x7fELF") {
        return match elf(head) {
            Some(kind @ (Binary::ElfStatic | Binary::ElfDynamic)) if is_go(head, &mut read_at) => {
                Binary::ElfGo { dynamic: kind == Binary::ElfDynamic }
            }
            Some(kind) => kind,
            None => Binary::Other,
        };
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
    let (phoff, phentsize, phnum) = Layout { wide: *b.get(4)? == 2 }.phdrs(&r)?;
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if r.u32(at)? == PT_INTERP {
            return Some(Binary::ElfDynamic);
        }
    }
    Some(Binary::ElfStatic)
}

/// Classifies the file at `path` ([`classify_file`] with positioned reads);
/// `Other` when it cannot be read.
pub fn classify_path(path: &std::path::Path) -> Binary {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let Ok(f) = std::fs::File::open(path) else { return Binary::Other };
    let mut head = [0u8; HEAD_LEN];
    let n = (&f).take(HEAD_LEN as u64).read(&mut head).unwrap_or(0);
    classify_file(&head[..n], |off, buf| f.read_at(buf, off).unwrap_or(0))
}

/// The ELF header's fields this module reads, for either class.
struct Layout {
    wide: bool,
}

impl Layout {
    fn phdrs(&self, r: &Reader) -> Option<(u64, u64, u64)> {
        Some(if self.wide {
            (r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
        } else {
            (r.u32(0x1c)?, r.u16(0x2a)?, r.u16(0x2c)?)
        })
    }
    /// (type, file offset, file size) of the program header at `at`.
    fn phdr(&self, r: &Reader, at: usize) -> Option<(u64, u64, u64)> {
        Some(if self.wide {
            (r.u32(at)?, r.u64(at + 8)?, r.u64(at + 32)?)
        } else {
            (r.u32(at)?, r.u32(at + 4)?, r.u32(at + 16)?)
        })
    }
}

/// Whether an ELF file is a Go program: a `Go` build-id note (in a PT_NOTE
/// segment), else a `.go.buildinfo` section name.
fn is_go(head: &[u8], read_at: &mut impl FnMut(u64, &mut [u8]) -> usize) -> bool {
    let Some(&class) = head.get(4) else { return false };
    let (r, l) = (Reader { b: head, le: head.get(5) == Some(&1) }, Layout { wide: class == 2 });
    let Some((phoff, phentsize, phnum)) = l.phdrs(&r) else { return false };
    const PT_NOTE: u64 = 4;
    for i in 0..phnum.min(64) {
        let Some(at) = usize::try_from(phoff + i * phentsize).ok() else { return false };
        let Some((kind, off, size)) = l.phdr(&r, at) else { break };
        if kind != PT_NOTE {
            continue;
        }
        let mut buf = [0u8; 512];
        let n = usize::try_from(size).unwrap_or(0).min(buf.len());
        let got = match usize::try_from(off).ok().and_then(|o| head.get(o..o.checked_add(n)?)) {
            Some(inside) => {
                buf[..n].copy_from_slice(inside);
                n
            }
            None => read_at(off, &mut buf[..n]),
        };
        if has_go_note(&buf[..got], r.le) {
            return true;
        }
    }
    has_go_section(&r, &l, read_at)
}

/// A note named `Go` of type 4 (NT_GO_BUILDID) among the notes in `b`.
fn has_go_note(b: &[u8], le: bool) -> bool {
    let r = Reader { b, le };
    let mut at = 0usize;
    while let (Some(namesz), Some(descsz), Some(kind)) = (r.u32(at), r.u32(at + 4), r.u32(at + 8)) {
        let name = b.get(at + 12..at + 12 + namesz as usize);
        if kind == 4 && name.is_some_and(|n| n.split(|c| *c == 0).next() == Some(b"Go")) {
            return true;
        }
        let pad = |n: u64| (n as usize).div_ceil(4) * 4;
        at += 12 + pad(namesz) + pad(descsz);
    }
    false
}

/// Whether the section-name table holds `.go.buildinfo`.
fn has_go_section(r: &Reader, l: &Layout, read_at: &mut impl FnMut(u64, &mut [u8]) -> usize) -> bool {
    let fields = if l.wide { (r.u64(0x28), r.u16(0x3a), r.u16(0x3e)) } else { (r.u32(0x20), r.u16(0x2e), r.u16(0x32)) };
    let (Some(shoff), Some(entsize), Some(strndx)) = fields else { return false };
    if shoff == 0 || !(40..=64).contains(&entsize) {
        return false;
    }
    let mut sh = [0u8; 64];
    let n = read_at(shoff + strndx * entsize, &mut sh[..entsize as usize]);
    let s = Reader { b: &sh[..n], le: r.le };
    let (off, size) = if l.wide { (s.u64(24), s.u64(32)) } else { (s.u32(16), s.u32(20)) };
    let (Some(off), Some(size)) = (off, size) else { return false };
    let mut names = [0u8; 4096];
    let want = usize::try_from(size).unwrap_or(0).min(names.len());
    let got = read_at(off, &mut names[..want]);
    names[..got].windows(14).any(|w| w == b".go.buildinfo\0")
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

    /// An ELF64 file with the given program header types; a PT_NOTE (4)
    /// points at a Go build-id note placed after the headers.
    fn elf64_with_note(types: &[u32], note_name: &[u8]) -> Vec<u8> {
        let mut h = elf64(types);
        let note_at = h.len() as u64;
        let mut note = Vec::new();
        note.extend(4u32.to_le_bytes());
        note.extend(8u32.to_le_bytes());
        note.extend(4u32.to_le_bytes());
        note.extend(note_name);
        note.extend(b"buildid!");
        for (i, t) in types.iter().enumerate() {
            if *t == 4 {
                let ph = 64 + i * 56;
                h[ph + 8..ph + 16].copy_from_slice(&note_at.to_le_bytes());
                h[ph + 32..ph + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
            }
        }
        h.extend(note);
        h
    }

    #[test]
    fn go_programs_by_their_build_id_note() {
        assert_eq!(classify(&elf64_with_note(&[1, 4], b"Go\0\0")), Binary::ElfGo { dynamic: false });
        assert_eq!(classify(&elf64_with_note(&[3, 4, 1], b"Go\0\0")), Binary::ElfGo { dynamic: true });
        assert_eq!(classify(&elf64_with_note(&[3, 4, 1], b"GNU\0")), Binary::ElfDynamic, "a GNU build id is not Go");
        assert!(Binary::ElfGo { dynamic: true }.refuses_shim());
    }

    #[test]
    fn go_programs_by_their_buildinfo_section_past_the_head() {
        // Section headers at 0x1000 (past the head), the name table at 0x2000.
        let mut file = elf64(&[1]);
        file[0x28..0x30].copy_from_slice(&0x1000u64.to_le_bytes());
        file[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        file[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
        file[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let names = b"\0.text\0.go.buildinfo\0";
        file.resize(0x1000 + 128, 0);
        file[0x1040 + 24..0x1040 + 32].copy_from_slice(&0x2000u64.to_le_bytes());
        file[0x1040 + 32..0x1040 + 40].copy_from_slice(&(names.len() as u64).to_le_bytes());
        file.resize(0x2000, 0);
        file.extend(names);
        let read_at = |off: u64, buf: &mut [u8]| {
            let from = (off as usize).min(file.len());
            let n = buf.len().min(file.len() - from);
            buf[..n].copy_from_slice(&file[from..from + n]);
            n
        };
        assert_eq!(classify_file(&file[..64 + 56], read_at), Binary::ElfGo { dynamic: false });
        assert_eq!(classify(&file[..64 + 56]), Binary::ElfStatic, "without reads past the head");
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
