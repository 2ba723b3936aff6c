//! Why the router could not start or stopped with an error: each variant is
//! one line naming the problem and, where there is one, the fix.

use std::io;
use std::path::PathBuf;

use agentfs_registry::HomeError;

use crate::config::ConfigError;

/// Errors of [`crate::serve`] and [`crate::run`].
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("a router is already running (pid {pid}); stop it with `agentfs router stop`")]
    AlreadyRunning { pid: u32 },
    #[error("cannot listen on port {port}: {why}; choose another with --port or AGENTFS_HTTP_PORT")]
    Listen { port: u16, why: String },
    #[error("cannot create the management socket {}: {source}", .path.display())]
    MgmtSocket { path: PathBuf, source: io::Error },
    #[error("cannot write the pidfile {}: {source}", .path.display())]
    Pidfile { path: PathBuf, source: io::Error },
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
}
