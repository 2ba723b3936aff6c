//! The machine's processes as agentfs needs them to own a wrapped command's
//! tree: pid, parent, process group, zombie or not, and a process's initial
//! environment. Linux reads `/proc`; elsewhere [`list`] knows nothing and
//! callers fall back to process groups (the CLI lists macOS children itself).

use std::collections::{BTreeMap, BTreeSet};

/// One process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// Exited, not reaped yet: signals do nothing to it.
    pub zombie: bool,
}

/// Every process visible, or `None` where this is not known (not Linux).
pub fn list() -> Option<Vec<ProcInfo>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let entries = std::fs::read_dir("/proc").ok()?;
    let procs = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect();
    Some(procs)
}

/// `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`; the command name
/// may hold spaces and parentheses, so the fields are read after the last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcInfo { pid, ppid, pgid, zombie: state == "Z" || state == "X" })
}

/// The descendants of `root` (not `root` itself) by parentage, leaving out
/// the subtrees of the processes in `skip`.
pub fn descendants(all: &[ProcInfo], root: u32, skip: &[u32]) -> BTreeSet<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in all {
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    let mut found = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for &c in children.get(&pid).into_iter().flatten() {
            if !skip.contains(&c) && c != root && found.insert(c) {
                todo.push(c);
            }
        }
    }
    found
}

/// Whether the process started with every `NAME=value` of `wanted` in its
/// environment (Linux: `/proc/<pid>/environ`, readable for our own
/// processes only; elsewhere never).
pub fn environ_has(pid: u32, wanted: &[(&str, &str)]) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    wanted.iter().all(|(k, v)| {
        let entry = format!("{k}={v}");
        env.split(|b| *b == 0).any(|e| e == entry.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32) -> ProcInfo {
        ProcInfo { pid, ppid, pgid: pid, zombie: false }
    }

    #[test]
    fn stat_lines_parse() {
        let s = parse_stat("42 (my (odd) prog) S 7 40 40 0 -1 4194560 1 0").unwrap();
        assert_eq!(s, ProcInfo { pid: 42, ppid: 7, pgid: 40, zombie: false });
        assert!(parse_stat("43 (x) Z 7 40 40").unwrap().zombie);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descendants_follow_parents_and_skip_subtrees() {
        let all = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(14, 13), p(20, 1)];
        assert_eq!(descendants(&all, 10, &[]), [11, 12, 13, 14].into());
        assert_eq!(descendants(&all, 10, &[13]), [11, 12].into());
        assert!(descendants(&all, 99, &[]).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_listed_with_its_environment() {
        let all = list().unwrap();
        let me = std::process::id();
        assert!(all.iter().any(|p| p.pid == me && !p.zombie));
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(environ_has(me, &[("PATH", &path)]) || path.is_empty());
        assert!(!environ_has(me, &[("AGENTFS_NO_SUCH_VARIABLE", "1")]));
    }
}
