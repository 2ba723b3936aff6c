//! The `Date` a response without one is given on its way through (RFC 9110
//! §6.6.1: a recipient with a clock that forwards such a response adds one),
//! as the general path's HTTP stack does. Rendered at most once a second per
//! thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second last rendered, and its `date: ...\r\n` line.
    static CACHE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// Appends a `date` header line for now to `out`.
pub fn put(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != second || c.1.is_empty() {
            c.0 = second;
            c.1 = format!("date: {}\r\n", httpdate::fmt_http_date(now)).into_bytes();
        }
        out.extend_from_slice(&c.1);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_date_line() {
        let mut out = Vec::new();
        super::put(&mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("date: ") && line.ends_with(" GMT\r\n"), "{line}");
        assert!(httpdate::parse_http_date(line.trim_start_matches("date: ").trim_end()).is_ok(), "{line}");
    }
}
