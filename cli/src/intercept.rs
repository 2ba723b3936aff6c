//! Which way `wrap` reaches listeners the shim cannot enter (statically
//! linked programs, Go on Linux): seccomp interception where the kernel
//! allows it (`seccomp`: they are converted, two copies run side by side),
//! else the PORT fallback and the listener scan (`unseen`: routed over TCP,
//! a second copy collides). The same answer is what `doctor` says.

use std::process::Command;

use agentfs_registry::Home;

use crate::unseen::Converted;
use crate::wrap::Instance;

/// Seccomp interception, set up for one spawn.
pub struct Intercept {
    #[cfg(target_os = "linux")]
    handoff: crate::sys_seccomp::Handoff,
}

impl Intercept {
    /// Interception for this wrap, if this system offers it (else why not).
    pub fn prepare() -> Result<Intercept, String> {
        #[cfg(target_os = "linux")]
        {
            crate::seccomp::availability()?;
            let handoff = crate::sys_seccomp::handoff().map_err(|e| format!("cannot create a socket pair: {e}"))?;
            Ok(Intercept { handoff })
        }
        #[cfg(not(target_os = "linux"))]
        Err("Linux only".to_owned())
    }

    /// Makes `cmd` install the filter just before it runs.
    pub fn install(&self, cmd: &mut Command) {
        #[cfg(target_os = "linux")]
        crate::sys_seccomp::install_on_spawn(cmd, &self.handoff);
        #[cfg(not(target_os = "linux"))]
        let _ = cmd;
    }

    /// After the spawn: runs the supervisor; `None` if the child could not
    /// install the filter (it says so). `quiet`: the command's pid, when the
    /// wrap line named it as a program the shim cannot enter.
    pub fn start(self, home: Home, me: Instance, replica: bool, quiet: Option<u32>) -> Option<Converted> {
        #[cfg(target_os = "linux")]
        {
            let Some(listener) = crate::sys_seccomp::receive(self.handoff) else {
                eprintln!(
                    "agentfs: seccomp interception could not be set up in the command; listeners the shim cannot enter are found by the listener scan instead"
                );
                return None;
            };
            Some(crate::seccomp::supervise(listener, home, me, replica, quiet))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (home, me, replica, quiet);
            None
        }
    }
}

/// The `doctor` line: which interception a wrap here would use.
pub fn describe() -> String {
    match Intercept::prepare() {
        Ok(_) => "interception for programs the shim cannot enter: seccomp user notification (their TCP binds are \
                  converted by the wrapper, so two copies run side by side; AGENTFS_SECCOMP=0 turns it off)"
            .to_owned(),
        Err(why) => format!(
            "interception for programs the shim cannot enter: the listener scan (a TCP listener of the tree is \
             routed over TCP; seccomp user notification is not used: {why})"
        ),
    }
}
