//! The router's log lines in a test: a global subscriber (once per test
//! binary) that keeps every line in memory, so a test can check what was
//! said about a file without reading a terminal.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (idempotent).
pub fn capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let sub = tracing_subscriber::fmt().with_writer(|| Sink).with_ansi(false).with_max_level(tracing::Level::INFO);
        let _ = tracing::subscriber::set_global_default(sub.finish());
    });
}

/// Every line logged so far that contains `needle`.
pub fn lines_with(needle: &str) -> Vec<String> {
    let all = LINES.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&all).lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}
