//! `doctor -- SCRIPT`: which programs a script names that the shim cannot
//! enter (statically linked, Go). A script's words are read as candidate
//! commands (a path, or a name found on PATH) — a heuristic: a program the
//! script builds or computes at run time is not seen, and `wrap`'s listener
//! scan still finds whatever listens.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use agentfs_registry::binary::Binary;

use crate::doctor::Finding;
use crate::program;

/// Bytes of the script read; words looked at.
const MAX_BYTES: u64 = 64 * 1024;
const MAX_WORDS: usize = 400;

/// One finding per program the script names that the shim cannot enter,
/// with `fix`: what `wrap` does about it.
pub fn named_programs(script: &Path, fix: &str) -> Vec<Finding> {
    let mut text = String::new();
    let Ok(f) = std::fs::File::open(script) else { return Vec::new() };
    if f.take(MAX_BYTES).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    let path_var = std::env::var_os("PATH");
    let words: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || ";|&()'\"`$<>=".contains(c)))
        .filter(|w| !w.is_empty() && !w.starts_with('-'))
        .take(MAX_WORDS)
        .collect();
    let dir = script.parent().unwrap_or(Path::new("."));
    let mut v = Vec::new();
    for w in words {
        let found = if w.contains('/') {
            let p = if Path::new(w).is_absolute() { Path::new(w).to_owned() } else { dir.join(w) };
            p.is_file().then_some(p)
        } else {
            program::which(w.as_ref(), path_var.as_deref())
        };
        let Some(p) = found else { continue };
        let what = match program::binary_kind(&p) {
            Binary::ElfGo { .. } => "a Go program",
            Binary::ElfStatic => "statically linked",
            _ => continue,
        };
        v.push(Finding {
            ok: true,
            what: format!("the script runs {w} ({}), {what}: the shim cannot enter it", p.display()),
            fix: Some(fix.into()),
        });
    }
    v
}
