//! The on-disk contract of agentfs, shared by the shim (which creates socket
//! files and sidecars), the router (which routes to them) and the CLI (which
//! lists them). No async runtime and no networking: the shim links this.
//!
//! # Layout
//! - [`names`] — DNS labels for apps and instances, host names, URLs.
//! - [`runfile`] — file names under `run/` (full, replica, hashed, wrapper).
//! - [`sunpath`] — what fits in `sockaddr_un`, and `/proc/self/fd` aliases.
//! - [`home`] — `$AGENTFS_HOME` layout and its ownership/mode checks.
//! - [`env`] — environment variables of a wrapped process; port lists.
//! - [`record`] — sidecar and wrapper-record schemas; route targets.
//! - [`trusted`] — the record `agentfs trust` keeps (`ca/trusted`): is the CA trusted, so URLs are `https://`.
//! - [`ca`] (feature `ca`) — the local certificate authority in `ca/`: root, exact-name leaves.
//! - [`binary`] — ELF/Mach-O/script: can the shim load into a program?
//! - [`codesign`] — a macOS program's hardened runtime and DYLD entitlements.
//! - [`atomic`] — write-temp-then-rename.
//! - [`safefile`] — reading our small files: no FIFO, symlink, foreign or oversized file.
//! - [`exit`] — how a reaped process of a wrapped tree ended: crash or restart.
//! - [`liveness`] — is a pid alive; the clock.
//! - [`procnet`] — Linux's `/proc/net` tables: does a Unix socket listen, who owns a TCP listener.
//! - [`reach`] — which listener a loopback TCP connect reaches (family, address, wildcard).
//! - [`proctree`] — processes by parentage and group, their environment (Linux `/proc`).
//! - [`stop`] — stopping a process tree: SIGTERM, grace period, SIGKILL.
//! - [`reap`] — what a killed wrapper left running, stopped; the sweep of dead wrappers.
//! - [`claim`] — taking a name in `run/`: is it free, the `.claim` file held until listen.
//! - [`scan`] — `run/` → listeners, wrappers, problems; safe removal.
//! - [`model`] — app → instance → port grouping, default instance, primary port.
//! - [`service`] — background instances (`agentfs up`): the supervisor's record in `services/`, restart policy.
//! - [`hosts`] — the marked block of `/etc/hosts` that `agentfs hosts` keeps, changed atomically and alone.
//! - [`routes`] — static routes in `routes.json`; [`static_target`] — which targets they may have.
//! - [`launch`] — planning an exec/spawn so the shim survives SIP (`launch_shell`: `sh -c` strings; `launch_probe`: the real file system).
#![forbid(unsafe_code)]

pub mod atomic;
pub mod binary;
#[cfg(feature = "ca")]
pub mod ca;
pub mod claim;
pub mod codesign;
pub mod env;
pub mod exit;
pub mod home;
pub mod hosts;
pub mod launch;
pub mod launch_probe;
pub mod launch_shell;
pub mod liveness;
pub mod model;
pub mod names;
pub mod procnet;
pub mod proctree;
pub mod reach;
pub mod reap;
pub mod record;
pub mod routes;
pub mod runfile;
pub mod safefile;
pub mod scan;
pub mod service;
pub mod static_target;
pub mod stop;
pub mod sunpath;
pub mod trusted;

#[cfg(any(test, feature = "test-util"))]
pub mod testutil;

pub use home::{Home, HomeError};
pub use names::Label;
pub use record::{Family, Sidecar, Target, WrapperRecord};
pub use runfile::SocketName;
