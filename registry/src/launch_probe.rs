//! The real file system as the launch resolver sees it, and the rule for
//! which programs are protected (their start deletes the preload variable):
//! SIP locations on macOS, or the directory `AGENTFS_SIMULATE_SIP` names.

use std::io::Read;
use std::path::PathBuf;

use crate::binary::{self, HEAD_LEN};
use crate::launch::Probe;

/// Whether starting `path` deletes the preload variable. Allocation-free, for
/// the shim's exec hooks.
pub fn is_protected_path(path: &[u8], simulated: Option<&[u8]>) -> bool {
    if let Some(dir) = simulated {
        if path.strip_prefix(dir).is_some_and(|rest| rest.starts_with(b"/")) {
            return true;
        }
    }
    cfg!(target_vendor = "apple") && is_sip_location(path)
}

/// A path under the folders macOS's System Integrity Protection covers.
pub fn is_sip_location(path: &[u8]) -> bool {
    let sip = [&b"/bin/"[..], b"/sbin/", b"/usr/", b"/System/"];
    sip.iter().any(|p| path.starts_with(p)) && !path.starts_with(b"/usr/local/")
}

/// The shim cannot be loaded into the program at `path`: statically linked,
/// arm64e on Apple Silicon, or hardened so that dyld would kill it.
pub fn refuses_shim(path: &str) -> bool {
    let kind = binary::classify_path(std::path::Path::new(path));
    kind.refuses_shim()
        || matches!(kind, binary::Binary::MachO { .. })
            && crate::codesign::read(std::path::Path::new(path)).is_some_and(|c| c.kills_with_shim())
}

/// Probes the real file system.
#[derive(Clone, Debug, Default)]
pub struct RealProbe {
    /// `AGENTFS_SIMULATE_SIP`.
    pub simulate_sip: Option<PathBuf>,
}

impl RealProbe {
    pub fn from_env() -> RealProbe {
        let dir = std::env::var_os(crate::launch::SIMULATE_SIP_VAR).map(PathBuf::from).filter(|p| p.is_absolute());
        RealProbe { simulate_sip: dir }
    }
}

impl Probe for RealProbe {
    fn is_executable(&self, path: &str) -> bool {
        let is_file = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        is_file && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
    }
    fn head(&self, path: &str) -> Option<Vec<u8>> {
        let mut buf = Vec::with_capacity(HEAD_LEN);
        std::fs::File::open(path).ok()?.take(HEAD_LEN as u64).read_to_end(&mut buf).ok()?;
        Some(buf)
    }
    fn is_protected(&self, path: &str) -> bool {
        let sim = self.simulate_sip.as_ref().map(|p| p.as_os_str().as_encoded_bytes());
        is_protected_path(path.as_bytes(), sim)
    }
    fn refuses_shim(&self, path: &str) -> bool {
        refuses_shim(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_directories_are_protected() {
        assert!(is_protected_path(b"/sim/env", Some(b"/sim")));
        assert!(!is_protected_path(b"/simx/env", Some(b"/sim")));
        assert!(!is_protected_path(b"/sim", Some(b"/sim")));
        assert_eq!(is_protected_path(b"/bin/sh", None), cfg!(target_vendor = "apple"));
        assert!(!is_protected_path(b"/usr/local/bin/node", None));
    }

    #[test]
    fn real_files() {
        let p = RealProbe::default();
        assert!(p.is_executable("/bin/sh"));
        assert!(!p.is_executable("/etc/hostname-does-not-exist"));
        assert!(!p.refuses_shim("/bin/sh"));
        assert!(p.head("/bin/sh").is_some_and(|h| !h.is_empty()));
    }
}
