//! Phase 1 of a request: the Host. Grammar
//! `[<port>.][<instance>.]<app>.localhost[:<router-port>]`; `localhost` and
//! `agentfs.localhost` are the dashboard. Anything that is not `localhost` or
//! under `.localhost` is misdirected (421): a page on another name that was
//! DNS-rebound to 127.0.0.1 must never reach an app.
//!
//! Runs on every request, so it allocates nothing for a Host already in
//! normal form (lowercase, no trailing dot): the name borrows the header.

use std::borrow::Cow;

use agentfs_registry::names::MAX_LABEL;
use agentfs_registry::runfile::parse_port;
use http::Request;

/// The name of the dashboard besides bare `localhost`.
pub const DASHBOARD_HOST: &str = "agentfs.localhost";

/// A Host that cannot be routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// No Host header and no authority (HTTP/1.0).
    Missing,
    /// More than one `Host` header (RFC 9112 §3.2: answered 400, never
    /// guessed, since two parties could each pick another one): 400.
    Duplicate,
    /// Not a host at all (bad port, bad characters): 400.
    Malformed(String),
    /// A real name that is not ours: 421.
    Misdirected(String),
}

/// A Host under `.localhost`, normalised (lowercase, no port, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host<'a> {
    name: Cow<'a, str>,
}

/// What an app host addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppRef<'a> {
    pub app: &'a str,
    pub instance: Option<&'a str>,
    pub port: Option<u16>,
}

impl<'a> Host<'a> {
    /// Parses a Host header value (`name[:port]`).
    pub fn parse(raw: &'a str) -> Result<Host<'a>, HostError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(HostError::Missing);
        }
        if raw.starts_with('[') {
            return Err(HostError::Misdirected(raw.to_owned()));
        }
        let name = match raw.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            Some(_) => return Err(HostError::Malformed(raw.to_owned())),
            None => raw,
        };
        match normalize(name) {
            Ok(name) => Ok(Host { name }),
            Err(NameError::NotLocalhost) => Err(HostError::Misdirected(raw.to_owned())),
            Err(NameError::BadLabel) => Err(HostError::Malformed(raw.to_owned())),
        }
    }

    /// The Host of a request: the `Host` header, else the URI's authority (h2).
    pub fn of_request<B>(req: &'a Request<B>) -> Result<Host<'a>, HostError> {
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        if let (Some(_), Some(_)) = (hosts.next(), hosts.next()) {
            return Err(HostError::Duplicate);
        }
        if let Some(h) = req.headers().get(http::header::HOST) {
            let s = h.to_str().map_err(|_| HostError::Malformed(String::from_utf8_lossy(h.as_bytes()).into()))?;
            return Host::parse(s);
        }
        match req.uri().authority() {
            Some(a) => Host::parse(a.as_str()),
            None => Err(HostError::Missing),
        }
    }

    /// The normalised name, e.g. `feat.shop.localhost`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_dashboard(&self) -> bool {
        self.name == "localhost" || self.name == DASHBOARD_HOST
    }

    /// The app, instance and port this host names, if it follows the grammar.
    pub fn app_ref(&self) -> Option<AppRef<'_>> {
        let rest = self.name.strip_suffix(".localhost")?;
        let mut labels = [""; 3];
        let mut n = 0;
        for label in rest.split('.') {
            *labels.get_mut(n)? = label;
            n += 1;
        }
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let (port, instance, app) = match &labels[..n] {
            [app] => (None, None, *app),
            [first, app] if is_digits(first) => (Some(parse_port(first)?), None, *app),
            [instance, app] => (None, Some(*instance), *app),
            [port, instance, app] if !is_digits(instance) => (Some(parse_port(port)?), Some(*instance), *app),
            _ => return None,
        };
        if is_digits(app) {
            return None;
        }
        Some(AppRef { app, instance, port })
    }
}

/// Why a name is not one of ours.
enum NameError {
    NotLocalhost,
    BadLabel,
}

/// `agentfs_registry::routes::normalize_host`'s rules (lowercase, one
/// trailing dot dropped, `localhost` or under `.localhost`, every label a
/// valid DNS label), borrowing when the name is already in normal form.
fn normalize(host: &str) -> Result<Cow<'_, str>, NameError> {
    let h = host.strip_suffix('.').unwrap_or(host);
    let h =
        if h.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(h.to_ascii_lowercase()) } else { Cow::Borrowed(h) };
    if h != "localhost" && !h.ends_with(".localhost") {
        return Err(NameError::NotLocalhost);
    }
    if !h.split('.').all(valid_label) {
        return Err(NameError::BadLabel);
    }
    Ok(h)
}

/// `agentfs_registry::Label::parse`'s rule, without building a label.
fn valid_label(s: &str) -> bool {
    let ok_chars = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    !s.is_empty() && s.len() <= MAX_LABEL && ok_chars && !s.starts_with('-') && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str) -> Option<(String, Option<String>, Option<u16>)> {
        let h = Host::parse(host).unwrap();
        h.app_ref().map(|a| (a.app.to_owned(), a.instance.map(str::to_owned), a.port))
    }

    #[test]
    fn grammar() {
        assert_eq!(r("shop.localhost"), Some(("shop".into(), None, None)));
        assert_eq!(r("Feat.Shop.localhost:7355"), Some(("shop".into(), Some("feat".into()), None)));
        assert_eq!(r("8080.shop.localhost"), Some(("shop".into(), None, Some(8080))));
        assert_eq!(r("8080.feat.shop.localhost."), Some(("shop".into(), Some("feat".into()), Some(8080))));
        assert_eq!(r("i42.shop.localhost"), Some(("shop".into(), Some("i42".into()), None)));
        assert_eq!(r("0.shop.localhost"), None, "port 0 is not a port");
        assert_eq!(r("99999.shop.localhost"), None);
        assert_eq!(r("1.2.shop.localhost"), None, "an instance is never all digits");
        assert_eq!(r("a.b.c.shop.localhost"), None);
        assert_eq!(r("80.localhost"), None);
    }

    #[test]
    fn dashboard_names() {
        assert!(Host::parse("localhost:7355").unwrap().is_dashboard());
        assert!(Host::parse("AgentFS.localhost").unwrap().is_dashboard());
        assert!(!Host::parse("shop.localhost").unwrap().is_dashboard());
    }

    #[test]
    fn foreign_and_bad_hosts() {
        let mis = |h: &str| matches!(Host::parse(h), Err(HostError::Misdirected(_)));
        assert!(mis("evil.example"));
        assert!(mis("app.localhost.evil.example"));
        assert!(mis("127.0.0.1:7355"));
        assert!(mis("[::1]:7355"));
        assert!(mis("localhostx"));
        assert!(matches!(Host::parse("shop.localhost:x"), Err(HostError::Malformed(_))));
        assert!(matches!(Host::parse("a_b.localhost"), Err(HostError::Malformed(_))));
        assert!(matches!(Host::parse(""), Err(HostError::Missing)));
    }

    #[test]
    fn same_rules_as_the_registry() {
        use agentfs_registry::routes::{HostError as RegistryError, normalize_host};
        let long = format!("{}.localhost", "a".repeat(64));
        let names = [
            "localhost",
            "LOCALHOST.",
            "shop.localhost",
            "Feat.Shop.LocalHost",
            "feat.shop.localhost.",
            "a-b.localhost",
            "-a.localhost",
            "a-.localhost",
            "a_b.localhost",
            "a..localhost",
            ".localhost",
            "localhost..",
            "x.localhostx",
            "évil.localhost",
            "8080.x.localhost",
            "",
            ".",
            "example.com",
            &long,
            "a.b.c.d.localhost",
        ];
        for name in names {
            let ours = normalize(name);
            match normalize_host(name) {
                Ok(n) => assert_eq!(ours.ok().as_deref(), Some(n.as_str()), "{name:?}"),
                Err(RegistryError::NotLocalhost) => assert!(matches!(ours, Err(NameError::NotLocalhost)), "{name:?}"),
                Err(_) => assert!(matches!(ours, Err(NameError::BadLabel)), "{name:?}"),
            }
        }
        assert!(matches!(normalize("shop.localhost"), Ok(Cow::Borrowed(_))), "no copy for a normal name");
    }

    #[test]
    fn host_header_then_authority() {
        let req = Request::builder().uri("http://shop.localhost:1/x").body(()).unwrap();
        assert_eq!(Host::of_request(&req).unwrap().name(), "shop.localhost");
        let req = Request::builder().uri("/x").header("host", "feat.shop.localhost").body(()).unwrap();
        assert_eq!(Host::of_request(&req).unwrap().name(), "feat.shop.localhost");
        let req = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(Host::of_request(&req), Err(HostError::Missing));
    }
}
