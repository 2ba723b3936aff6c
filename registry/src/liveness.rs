//! Is a process still there? The registry's only notion of liveness: a pid
//! that `kill(pid, 0)` can reach (or that exists but is not ours to signal),
//! and, on Linux, is not a zombie (a killed app its parent has not reaped
//! yet no longer serves anything).

use rustix::io::Errno;
use rustix::process::{Pid, test_kill_process};

/// Whether a process with this pid exists. Pid 0 and pids that do not fit
/// a `pid_t` are never alive.
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    let exists = match test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == Errno::PERM,
    };
    exists && !is_zombie(pid.as_raw_pid())
}

/// `Z` in `/proc/<pid>/stat` (Linux; elsewhere never).
fn is_zombie(pid: i32) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may contain spaces.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unreaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_zombie(pid as i32) {
            assert!(std::time::Instant::now() < deadline, "the child never became a zombie");
            std::thread::yield_now();
        }
        assert!(!pid_alive(pid), "exited but not reaped");
        child.wait().unwrap();
    }

    #[test]
    fn own_pid_is_alive_and_reaped_child_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
