//! The agentfs router: a daemon on loopback that finds wrapped apps' Unix
//! sockets in `$AGENTFS_HOME/run/` and proxies `http://<app>.localhost` and
//! `http://<instance>.<app>.localhost` to them by Host header. A library: the
//! `agentfs router run` command of the CLI calls [`run`].
//!
//! # Layout
//! Public: [`config`] (what it is told), [`serve`] / [`run`] (from
//! `lifecycle`), [`client`] (blocking management client), [`api`] (its JSON
//! shapes), [`pidfile`] (who the running router is), [`error`].
//!
//! The request path, one phase per module: `host` (parse the Host) →
//! `table` (resolve; an atomically swapped route table; `crashes`: a crash
//! told from a start or a restart) → `pool` (pooled
//! upstream connections over `stream`) → `proxy` (forward, stream) /
//! `tunnel` (upgrades; `connect`: WebSockets over h2 bridged to the
//! HTTP/1.1 handshake), with `headers` (hop-by-hop, X-Forwarded-*, hop
//! count), `answers` (the router's own 4xx/5xx; worded per case in `replies`;
//! one HTML layout with the dashboard in `page`), `dashboard` (the page, its
//! live event stream; its cards in `dashboard_view`; its stop button's checks in
//! `stopper`) and `body`.
//! `lean` serves plain HTTP/1.1 requests through the same phases without
//! hyper, and hands a connection to the path above at its first request
//! that is anything else.
//!
//! Around it: `discovery` (scan, sweep) with `dirwatch` (the file-system
//! watch), `pidwatch` (process exits) and `reaper` (stopping what a killed
//! wrapper left), `server` (accept loops, graceful drain) on `shards` (a
//! single-threaded runtime per CPU), `listen` (addresses),
//! `limits` (header size/time, connections), `mgmt` (the `router.sock` API),
//! `original` (listening on the apps' original ports too),
//! `state` (what the running parts share), `hostsync` (the hosts file's block, `AGENTFS_SYNC_HOSTS=1`), `throttle` (backoff and log
//! limits for failures that repeat), `tls` (HTTPS on the same port: the
//! first byte tells; certificates from the local CA per SNI).
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod pidfile;

mod answers;
mod body;
mod connect;
mod crashes;
mod dashboard;
mod dashboard_view;
mod dirwatch;
mod discovery;
mod headers;
mod host;
mod hostsync;
mod lean;
mod lifecycle;
mod limits;
mod listen;
mod mgmt;
mod original;
mod page;
mod pidwatch;
mod pool;
mod proxy;
mod reaper;
mod replies;
mod server;
mod shards;
mod state;
mod stopper;
mod stream;
mod table;
mod throttle;
mod tls;
mod tunnel;

pub use config::{Config, ConfigError, Limits};
pub use error::RouterError;
pub use lifecycle::{run, serve};
