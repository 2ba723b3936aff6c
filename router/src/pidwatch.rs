//! Process-exit notification: when an app or a wrapper dies, its route must
//! go at once, not at the next periodic rescan. Each watched pid gets a
//! descriptor that becomes readable when the process exits, polled by tokio:
//! a pidfd on Linux, a kqueue with an EVFILT_PROC/NOTE_EXIT event on macOS.
//! Elsewhere (or if neither is available) the periodic rescan is the fallback.

use std::collections::HashMap;
use std::sync::Arc;

/// Called when a watched process exits.
pub type OnExit = Arc<dyn Fn() + Send + Sync>;

/// The set of watched pids, kept equal to the pids the table depends on.
pub struct PidWatch {
    on_exit: OnExit,
    tasks: HashMap<u32, tokio::task::AbortHandle>,
}

impl PidWatch {
    pub fn new(on_exit: OnExit) -> PidWatch {
        PidWatch { on_exit, tasks: HashMap::new() }
    }

    /// Watches exactly `pids` from now on.
    pub fn update(&mut self, pids: &[u32]) {
        self.tasks.retain(|pid, task| {
            let keep = pids.binary_search(pid).is_ok() && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for &pid in pids {
            if !self.tasks.contains_key(&pid) {
                if let Some(task) = watch(pid, self.on_exit.clone()) {
                    self.tasks.insert(pid, task);
                }
            }
        }
    }
}

impl Drop for PidWatch {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// A descriptor that becomes readable when `pid` exits, `None` (after
/// calling `on_exit` if it is already gone) when there is none.
#[cfg(target_os = "linux")]
fn exit_fd(pid: u32, on_exit: &OnExit) -> Option<std::os::fd::OwnedFd> {
    use rustix::process::{Pid, PidfdFlags, pidfd_open};

    let raw = Pid::from_raw(i32::try_from(pid).ok()?)?;
    match pidfd_open(raw, PidfdFlags::NONBLOCK) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::SRCH) => {
            on_exit();
            None
        }
        Err(e) => {
            tracing::debug!(pid, error = %e, "no pidfd; relying on the periodic rescan");
            None
        }
    }
}

/// A kqueue with a one-shot EVFILT_PROC/NOTE_EXIT event for `pid`.
#[cfg(target_vendor = "apple")]
fn exit_fd(pid: u32, on_exit: &OnExit) -> Option<std::os::fd::OwnedFd> {
    use nix::errno::Errno;
    use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};

    let kq = Kqueue::new().ok()?;
    let flags = EvFlags::EV_ADD | EvFlags::EV_ONESHOT;
    let exit = KEvent::new(pid as usize, EventFilter::EVFILT_PROC, flags, FilterFlag::NOTE_EXIT, 0, 0);
    match kq.kevent(&[exit], &mut [], None) {
        Ok(_) => Some(kq.into()),
        Err(Errno::ESRCH) => {
            on_exit();
            None
        }
        Err(e) => {
            tracing::debug!(pid, error = %e, "no kqueue process watch; relying on the periodic rescan");
            None
        }
    }
}

#[cfg(any(target_os = "linux", target_vendor = "apple"))]
fn watch(pid: u32, on_exit: OnExit) -> Option<tokio::task::AbortHandle> {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    let fd = exit_fd(pid, &on_exit)?;
    // `with_interest` is deprecated because a generic `T: AsRawFd` may close
    // its descriptor while registered; an `OwnedFd` owned by the `AsyncFd`
    // cannot, which is the I/O-safety condition the safe-but-deprecated
    // constructor relies on. (The replacement, `register_with_interest`, is
    // `unsafe`, and this crate forbids unsafe code.)
    #[allow(deprecated)]
    let afd = AsyncFd::with_interest(fd, Interest::READABLE).ok()?;
    let task = tokio::spawn(async move {
        if afd.readable().await.is_ok() {
            tracing::debug!(pid, "process exited");
            on_exit();
        }
    });
    Some(task.abort_handle())
}

#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
fn watch(_pid: u32, _on_exit: OnExit) -> Option<tokio::task::AbortHandle> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn exit_is_reported() {
        let hits = Arc::new(AtomicU32::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (h, n) = (hits.clone(), notify.clone());
        let mut w = PidWatch::new(Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
            n.notify_one();
        }));
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        w.update(&[child.id()]);
        child.kill().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), notify.notified()).await.unwrap();
        child.wait().unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        w.update(&[]);
        assert!(w.tasks.is_empty());
    }
}
