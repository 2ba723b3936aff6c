//! Names are what the shim, the router and the CLI must agree on byte for byte:
//! the DNS labels of apps and instances, and the file names under `run/` built
//! from them. Everything that turns user input into a name goes through here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest DNS label.
pub const MAX_LABEL: usize = 63;

/// A DNS label: `[a-z0-9-]{1,63}`, no leading or trailing `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

/// Why a string is not a valid label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("a name must not be empty")]
    Empty,
    #[error("name {0:?} is longer than 63 characters")]
    TooLong(String),
    #[error("name {0:?} may only hold lowercase letters, digits and '-', not at either end")]
    BadChar(String),
}

impl Label {
    /// Accepts exactly a valid label.
    pub fn parse(s: &str) -> Result<Label, LabelError> {
        if s.is_empty() {
            return Err(LabelError::Empty);
        }
        if s.len() > MAX_LABEL {
            return Err(LabelError::TooLong(s.to_owned()));
        }
        let ok_chars = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(LabelError::BadChar(s.to_owned()));
        }
        Ok(Label(s.to_owned()))
    }

    /// Turns any text (a package name, a branch, a directory) into a label:
    /// lowercase, every run of other characters becomes one `-`, trimmed,
    /// cut to 63. `None` when nothing usable is left.
    pub fn sanitize(s: &str) -> Option<Label> {
        let mut out = String::with_capacity(s.len().min(MAX_LABEL));
        let mut pending_dash = false;
        for c in s.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                if pending_dash && !out.is_empty() {
                    out.push('-');
                }
                pending_dash = false;
                out.push(c);
            } else {
                pending_dash = true;
            }
            if out.len() >= MAX_LABEL {
                break;
            }
        }
        out.truncate(MAX_LABEL);
        let trimmed = out.trim_end_matches('-');
        (!trimmed.is_empty()).then(|| Label(trimmed.to_owned()))
    }

    /// Like [`Label::sanitize`], for instance ids: an all-digit result gets an
    /// `i` prefix, so a leading number in a host name always means a port.
    pub fn sanitize_instance(s: &str) -> Option<Label> {
        let label = Label::sanitize(s)?;
        if !label.is_all_digits() {
            return Some(label);
        }
        let mut prefixed = String::from("i");
        prefixed.push_str(&label.0[..label.0.len().min(MAX_LABEL - 1)]);
        Some(Label(prefixed))
    }

    /// Accepts exactly a valid instance label (a label that is not all digits).
    pub fn parse_instance(s: &str) -> Result<Label, LabelError> {
        let label = Label::parse(s)?;
        if label.is_all_digits() {
            return Err(LabelError::BadChar(s.to_owned()));
        }
        Ok(label)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_all_digits(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_digit())
    }
}

impl TryFrom<String> for Label {
    type Error = LabelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Label::parse(&s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `<instance>.<app>.localhost`, or `<app>.localhost` without an instance.
pub fn hostname(app: &Label, instance: Option<&Label>) -> String {
    match instance {
        Some(i) => format!("{i}.{app}.localhost"),
        None => format!("{app}.localhost"),
    }
}

/// How the URLs of the router are written: its port, and `https` once the
/// local CA is trusted (`agentfs trust`, see [`crate::trusted`]), else `http`.
/// Every URL the CLI shows (banner, `ps`, `AGENTFS_URL`) comes from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub port: u16,
}

impl Origin {
    /// Plain HTTP on `port`.
    pub fn http(port: u16) -> Origin {
        Origin { https: false, port }
    }

    /// `<scheme>://<host>`, with `:<port>` unless it is the scheme's default.
    pub fn url(self, host: &str) -> String {
        match (self.https, self.port) {
            (false, 80) => format!("http://{host}"),
            (true, 443) => format!("https://{host}"),
            (false, port) => format!("http://{host}:{port}"),
            (true, port) => format!("https://{host}:{port}"),
        }
    }
}

/// `http://<host>` with `:<port>` unless the router is on port 80.
pub fn url(host: &str, router_port: u16) -> String {
    Origin::http(router_port).url(host)
}

/// 64-bit FNV-1a: a stable short hash for names that do not fit sun_path and
/// for the shim's content-addressed install directory. Not cryptographic.
/// The host of a URL this crate wrote: `http://main.shop.localhost:7355` → `main.shop.localhost`.
pub fn host_of_url(url: &str) -> Option<&str> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of_url("http://3000.main.shop.localhost:7355"), Some("3000.main.shop.localhost"));
        assert_eq!(host_of_url("https://shop.localhost/"), Some("shop.localhost"));
        assert_eq!(host_of_url("nonsense"), None);
    }

    #[test]
    fn parse_accepts_only_labels() {
        assert!(Label::parse("shop").is_ok());
        assert!(Label::parse("feat-x2").is_ok());
        assert_eq!(Label::parse(""), Err(LabelError::Empty));
        assert!(matches!(Label::parse("-x"), Err(LabelError::BadChar(_))));
        assert!(matches!(Label::parse("x-"), Err(LabelError::BadChar(_))));
        assert!(matches!(Label::parse("Shop"), Err(LabelError::BadChar(_))));
        assert!(matches!(Label::parse("a.b"), Err(LabelError::BadChar(_))));
        assert!(matches!(Label::parse(&"a".repeat(64)), Err(LabelError::TooLong(_))));
        assert!(Label::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn sanitize_maps_any_text() {
        let s = |x: &str| Label::sanitize(x).map(|l| l.0);
        assert_eq!(s("feature/Login_Page").as_deref(), Some("feature-login-page"));
        assert_eq!(s("@acme/shop").as_deref(), Some("acme-shop"));
        assert_eq!(s("--a--b--").as_deref(), Some("a-b"));
        assert_eq!(s("café au lait").as_deref(), Some("caf-au-lait"));
        assert_eq!(s("///"), None);
        assert_eq!(s(""), None);
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let got = s(&long).unwrap();
        assert_eq!(got, "a".repeat(62), "cut at 63 and never ends with '-'");
        assert!(Label::parse(&got).is_ok());
    }

    #[test]
    fn instances_are_never_all_digits() {
        let s = |x: &str| Label::sanitize_instance(x).map(|l| l.0);
        assert_eq!(s("1234").as_deref(), Some("i1234"));
        assert_eq!(s("12-34").as_deref(), Some("12-34"));
        assert_eq!(s("main").as_deref(), Some("main"));
        let long = s(&"7".repeat(80)).unwrap();
        assert_eq!(long.len(), 63);
        assert!(long.starts_with('i'));
        assert!(Label::parse_instance("42").is_err());
        assert!(Label::parse_instance("v42").is_ok());
    }

    #[test]
    fn hosts_and_urls() {
        let app = Label::parse("shop").unwrap();
        let inst = Label::parse("feat-x").unwrap();
        assert_eq!(hostname(&app, Some(&inst)), "feat-x.shop.localhost");
        assert_eq!(hostname(&app, None), "shop.localhost");
        assert_eq!(url("shop.localhost", 80), "http://shop.localhost");
        assert_eq!(url("shop.localhost", 7355), "http://shop.localhost:7355");
        let tls = |port| Origin { https: true, port };
        assert_eq!(tls(7355).url("shop.localhost"), "https://shop.localhost:7355");
        assert_eq!(tls(443).url("shop.localhost"), "https://shop.localhost");
        assert_eq!(tls(80).url("shop.localhost"), "https://shop.localhost:80", "TLS on port 80 needs the port");
    }

    #[test]
    fn label_serde_validates() {
        let ok: Label = serde_json::from_str("\"shop\"").unwrap();
        assert_eq!(ok.as_str(), "shop");
        assert!(serde_json::from_str::<Label>("\"Not OK\"").is_err());
    }
}
