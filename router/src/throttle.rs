//! Keeping a failure that repeats from costing a core and flooding the log:
//! an accept loop out of file descriptors fails on every call, as fast as it
//! can loop. [`Backoff`] spaces the retries (growing pauses, reset by a
//! success) and [`LogLimit`] lets one line through per period, saying how
//! many like it were held back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Growing pauses between retries of a failing call.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: FIRST_PAUSE }
    }
}

impl Backoff {
    /// Sleeps, then doubles the next pause (up to a second).
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(LONGEST_PAUSE);
    }

    /// The call succeeded: the next failure pauses briefly again.
    pub fn reset(&mut self) {
        self.next = FIRST_PAUSE;
    }
}

/// At most one log line per period for one kind of event.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl LogLimit {
    pub const fn new(every: Duration) -> LogLimit {
        LogLimit { every, last: Mutex::new(None), held_back: AtomicU64::new(0) }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// held back since the last one; `None` to stay quiet.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.saturating_duration_since(t) < self.every) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

/// Logs a warning through a [`LogLimit`]: `warn_limited!(LIMIT, error = %e, "message")`.
macro_rules! warn_limited {
    ($limit:expr, $($field:tt)+) => {
        if let Some(held_back) = $limit.allow() {
            tracing::warn!(held_back, $($field)+);
        }
    };
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period() {
        let l = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.allow(), None);
        }
        let quick = LogLimit::new(Duration::ZERO);
        assert_eq!(quick.allow(), Some(0));
        assert_eq!(quick.allow(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_and_reset() {
        let mut b = Backoff::default();
        let t = tokio::time::Instant::now();
        for _ in 0..12 {
            b.pause().await;
        }
        let waited = t.elapsed();
        assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(10), "{waited:?}");
        b.reset();
        let t = tokio::time::Instant::now();
        b.pause().await;
        assert_eq!(t.elapsed(), FIRST_PAUSE);
    }
}
