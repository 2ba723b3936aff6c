//! How a process of a wrapped tree ended, as its wrapper saw it when it
//! reaped it (a child subreaper reaps the descendants it adopted). The
//! wrapper keeps the last few in its record (`WrapperRecord::exits`); the
//! router reads them to tell a crash (answer at once with the exit) from a
//! restart by a watcher (hold requests until the app listens again).

use serde::{Deserialize, Serialize};

/// How many exits a wrapper record keeps (the newest).
pub const KEPT: usize = 8;

/// One reaped process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub pid: u32,
    /// Its exit status, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub at_ms: u64,
}

impl Exit {
    /// `exit status 1`, `killed by signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(s)) => match signal_name(s) {
                Some(name) => format!("killed by signal {s} ({name})"),
                None => format!("killed by signal {s}"),
            },
            (Some(c), None) => format!("exit status {c}"),
            (None, None) => "exited".to_owned(),
        }
    }

    /// Whether this is how a watcher stops an app it restarts (or how an
    /// app ends when asked to): exit status 0, or SIGTERM, SIGINT, SIGHUP,
    /// SIGUSR1 or SIGUSR2 (nodemon's). Anything else is a crash.
    pub fn looks_like_restart(&self) -> bool {
        match (self.code, self.signal) {
            (_, Some(s)) => [libc_sig::HUP, libc_sig::INT, libc_sig::TERM, libc_sig::USR1, libc_sig::USR2].contains(&s),
            (Some(c), None) => c == 0,
            (None, None) => false,
        }
    }
}

/// Adds `exit` to `exits`, keeping the newest [`KEPT`].
pub fn push(exits: &mut Vec<Exit>, exit: Exit) {
    exits.push(exit);
    if exits.len() > KEPT {
        exits.drain(..exits.len() - KEPT);
    }
}

/// Signal numbers (the same on Linux and macOS for these).
mod libc_sig {
    pub const HUP: i32 = 1;
    pub const INT: i32 = 2;
    pub const TERM: i32 = 15;
    #[cfg(target_os = "linux")]
    pub const USR1: i32 = 10;
    #[cfg(target_os = "linux")]
    pub const USR2: i32 = 12;
    #[cfg(not(target_os = "linux"))]
    pub const USR1: i32 = 30;
    #[cfg(not(target_os = "linux"))]
    pub const USR2: i32 = 31;
}

fn signal_name(s: i32) -> Option<&'static str> {
    let name = match s {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        s if s == libc_sig::USR1 => "SIGUSR1",
        s if s == libc_sig::USR2 => "SIGUSR2",
        _ => return None,
    };
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>) -> Exit {
        Exit { pid: 7, code, signal, at_ms: 1 }
    }

    #[test]
    fn crashes_and_restarts() {
        assert_eq!(exit(None, Some(9)).describe(), "killed by signal 9 (SIGKILL)");
        assert_eq!(exit(Some(1), None).describe(), "exit status 1");
        assert!(!exit(None, Some(9)).looks_like_restart());
        assert!(!exit(None, Some(11)).looks_like_restart());
        assert!(!exit(Some(1), None).looks_like_restart());
        assert!(exit(Some(0), None).looks_like_restart());
        assert!(exit(None, Some(15)).looks_like_restart());
        assert!(exit(None, Some(libc_sig::USR2)).looks_like_restart());
    }

    #[test]
    fn keeps_the_newest() {
        let mut v = Vec::new();
        for pid in 0..20 {
            push(&mut v, Exit { pid, code: Some(0), signal: None, at_ms: 0 });
        }
        assert_eq!(v.len(), KEPT);
        assert_eq!(v[0].pid, 20 - KEPT as u32);
    }
}
