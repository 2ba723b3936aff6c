//! The JSON shapes of the management API and of the dashboard's
//! `/api/routes`, shared by the server and [`crate::client`], so the CLI reads
//! exactly what the router writes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    /// The HTTP port in use.
    pub port: u16,
    /// Addresses listened on, e.g. `127.0.0.1:7355`, `[::1]:7355`.
    pub listening: Vec<String>,
    /// Where those listeners come from: `bound` by the router, `systemd`
    /// (socket activation, `LISTEN_FDS`) or `launchd` (`launch_activate_socket`).
    #[serde(default = "bound")]
    pub sockets: String,
    /// `http://localhost[:port]`: the dashboard.
    pub url: String,
    pub home: PathBuf,
    pub started_at_ms: u64,
    /// Routed sockets and TCP fallbacks found in `run/`.
    pub listeners: usize,
    pub apps: usize,
    pub static_routes: usize,
    /// Requests waiting for a starting instance to listen.
    pub waiting_requests: usize,
    /// Bumped on every route-table change.
    pub generation: u64,
}

fn bound() -> String {
    "bound".into()
}

/// `GET /v1/routes` and the dashboard's `/api/routes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesView {
    pub apps: Vec<AppView>,
    pub static_routes: Vec<StaticView>,
    /// Instances whose wrapper runs but whose app has not listened yet.
    pub starting: Vec<StartingView>,
    /// Ports instances converted, mirrored on loopback (see the router's `original`).
    #[serde(default)]
    pub original_ports: Vec<OriginalPortView>,
}

impl RoutesView {
    /// The same view with `https://` URLs, for when the local CA is trusted
    /// (`agentfs trust`); the URLs are built for plain HTTP on the router's
    /// port, which TLS shares.
    pub fn over_https(mut self) -> RoutesView {
        let https = |url: &mut String| {
            if let Some(rest) = url.strip_prefix("http://") {
                *url = format!("https://{rest}");
            }
        };
        for app in &mut self.apps {
            https(&mut app.url);
            for i in &mut app.instances {
                https(&mut i.url);
                i.ports.iter_mut().for_each(|p| https(&mut p.url));
            }
        }
        self.static_routes.iter_mut().for_each(|s| https(&mut s.url));
        self
    }
}

/// An original port: `localhost:<port>` outside the instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalPortView {
    pub port: u16,
    /// The router listens on `127.0.0.1:<port>` and `[::1]:<port>`.
    pub mirrored: bool,
    /// Why not, e.g. `in use by pid 4242 (postgres)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `<instance>.<app>` that `localhost:<port>` reaches (the earliest holder).
    pub answers: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    pub app: String,
    /// URL of the default instance.
    pub url: String,
    /// Default instance first.
    pub instances: Vec<InstanceView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub instance: String,
    pub default: bool,
    pub url: String,
    pub primary_port: u16,
    pub started_at_ms: u64,
    pub ports: Vec<PortView>,
    /// The directory it runs in (its first listener's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub port: u16,
    pub url: String,
    /// One per replica: socket path or `host:port`.
    pub targets: Vec<String>,
    pub pids: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticView {
    pub host: String,
    pub url: String,
    pub target: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartingView {
    pub app: String,
    pub instance: String,
    pub wrapper_pid: u32,
    /// It listened and crashed: the process that exited and how
    /// (`pid 42, killed by signal 9 (SIGKILL)`); absent while starting or restarting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crashed: Option<String>,
    /// The directory its wrapper runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub started_at_ms: u64,
}

/// Body of `PUT /v1/static/<host>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutStatic {
    /// `/path/to.sock`, `host:port` or `port`.
    pub target: String,
    /// Take a TCP target off loopback (see `agentfs_registry::static_target`).
    #[serde(default)]
    pub allow_remote: bool,
}

/// Body of every error answer of the management API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
