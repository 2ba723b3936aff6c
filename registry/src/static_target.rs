//! Which targets a static route (`agentfs route HOST TARGET`) may have. A
//! static route hands every request for its host to the target, so a target
//! must be something of the user's on this machine: loopback TCP, or a Unix
//! socket of theirs outside the agentfs home. Never the router's own
//! `router.sock` (that would open the management API to any local process
//! through `Host: x.localhost`), nor a file that is not a socket, nor a
//! link-local address (cloud metadata services live there). A TCP target on
//! another host is taken only when asked for (`--allow-remote`).

use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::{Home, Target};

/// Why a target is refused; each says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} is inside the agentfs home; route to an app's own socket or port instead")]
    InHome(PathBuf),
    #[error("{0} exists but is not a Unix socket")]
    NotASocket(PathBuf),
    #[error("{path} belongs to uid {owner}; only sockets of your own (uid {me}) can be routed to")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("{0} is a link-local address (where cloud metadata services answer); it is never routed to")]
    LinkLocal(String),
    #[error("{0} is not on this machine's loopback; pass --allow-remote to route to another host on purpose")]
    Remote(String),
    #[error("{0} is not an address to connect to")]
    Unusable(String),
}

/// Checks a target given by the user (the CLI, the management API):
/// everything of [`check_saved`], and a TCP host off loopback only when
/// `allow_remote`.
pub fn check_new(home: &Home, target: &Target, allow_remote: bool) -> Result<(), Refused> {
    check_saved(home, target)?;
    match target {
        Target::Tcp { host, .. } if !allow_remote && !is_loopback_host(host) => {
            Err(Refused::Remote(target.to_string()))
        }
        _ => Ok(()),
    }
}

/// Checks a target read back from `routes.json` (where a remote one was
/// allowed when it was added): never the home, never a non-socket, never
/// link-local.
pub fn check_saved(home: &Home, target: &Target) -> Result<(), Refused> {
    match target {
        Target::Unix(path) => check_socket_path(home, path),
        Target::Tcp { host, .. } => match host.parse::<IpAddr>() {
            Ok(ip) if is_link_local(ip) => Err(Refused::LinkLocal(target.to_string())),
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => Err(Refused::Unusable(target.to_string())),
            _ => Ok(()),
        },
    }
}

fn check_socket_path(home: &Home, path: &Path) -> Result<(), Refused> {
    // Where the path really leads: through symlinks, `..` and the existing
    // part of a path that does not exist yet.
    let real = resolve(path);
    let home_real = resolve(home.root());
    if real.starts_with(&home_real) || path.starts_with(home.root()) {
        return Err(Refused::InHome(path.to_owned()));
    }
    match check_connectable(path) {
        Err(Refused::Unusable(_)) => Ok(()), // not there yet
        other => other,
    }
}

/// What the router checks before it connects to a static route's socket
/// (which may have appeared after the route was made): a socket, reached
/// through any symlinks, that belongs to us.
pub fn check_connectable(path: &Path) -> Result<(), Refused> {
    let Ok(meta) = std::fs::metadata(path) else { return Err(Refused::Unusable(path.display().to_string())) };
    if !meta.file_type().is_socket() {
        return Err(Refused::NotASocket(path.to_owned()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Refused::NotOwned { path: path.to_owned(), owner: meta.uid(), me });
    }
    Ok(())
}

/// `path` with its longest existing prefix canonicalized.
fn resolve(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                cur = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| to_canonical(ip).is_loopback())
}

fn is_link_local(ip: IpAddr) -> bool {
    match to_canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn to_canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_targets() {
        let dir = TempDir::new("target");
        let home = Home::at(dir.path().join("h")).unwrap();
        for ok in ["3000", "127.0.0.1:3000", "127.5.0.1:80", "[::1]:8080", "localhost:5173", "[::ffff:127.0.0.1]:80"] {
            assert_eq!(check_new(&home, &t(ok), false), Ok(()), "{ok}");
        }
        for remote in ["10.0.0.5:80", "192.168.1.2:5432", "api.internal:80", "[2001:db8::1]:443"] {
            assert!(matches!(check_new(&home, &t(remote), false), Err(Refused::Remote(_))), "{remote}");
            assert_eq!(check_new(&home, &t(remote), true), Ok(()), "{remote} with --allow-remote");
        }
        for never in ["169.254.169.254:80", "[fe80::1]:80", "[::ffff:169.254.169.254]:80"] {
            assert!(matches!(check_new(&home, &t(never), true), Err(Refused::LinkLocal(_))), "{never}");
        }
        assert!(matches!(check_new(&home, &t("0.0.0.0:80"), true), Err(Refused::Unusable(_))));
    }

    #[test]
    fn unix_targets() {
        let dir = TempDir::new("target");
        let home = Home::at(dir.path().join("h")).unwrap();
        home.ensure().unwrap();
        assert!(matches!(check_new(&home, &Target::Unix(home.router_sock()), false), Err(Refused::InHome(_))));
        let sneaky = dir.path().join("h/../h/run/x.sock");
        assert!(matches!(check_new(&home, &Target::Unix(sneaky), false), Err(Refused::InHome(_))));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(home.root(), &link).unwrap();
        assert!(matches!(check_new(&home, &Target::Unix(link.join("router.sock")), false), Err(Refused::InHome(_))));
        assert!(matches!(check_new(&home, &t("/etc/passwd"), false), Err(Refused::NotASocket(_))));
        let sock = dir.path().join("app.sock");
        assert_eq!(check_new(&home, &Target::Unix(sock.clone()), false), Ok(()), "not there yet");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(check_new(&home, &Target::Unix(sock), false), Ok(()));
    }
}
