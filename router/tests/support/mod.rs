//! Shared by the integration tests: a temporary `$AGENTFS_HOME`, a router
//! served in-process on a free port, fake apps (real hyper servers on Unix
//! sockets in `run/`, announced by sidecars written exactly as the shim
//! writes them), and small HTTP helpers over real TCP connections.
#![allow(dead_code)]

pub mod app;
pub mod http;
pub mod logs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agentfs_registry::Home;
use agentfs_router::{Config, RouterError, client};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A temporary home, removed on drop. Short paths: sockets live under it.
pub struct Env {
    pub dir: PathBuf,
    pub home: Home,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/afr-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let home = Home::at(dir.join("h")).unwrap();
        home.ensure().unwrap();
        Env { dir, home }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.home.run_dir()
    }

    /// Any free port, quick rescans, short waits: tests never sleep long.
    pub fn config(&self) -> Config {
        let mut c = Config::new(self.home.clone());
        c.port = Some(0);
        c.drain_timeout = Duration::from_secs(5);
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A router served in this process.
pub struct Router {
    pub port: u16,
    pub home: Home,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RouterError>>>,
}

impl Router {
    pub async fn start(config: Config) -> Router {
        let home = config.home.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(agentfs_router::serve(config, async move {
            let _ = rx.await;
        }));
        let h = home.clone();
        let status = poll(Duration::from_secs(10), || {
            let h = h.clone();
            async move { blocking(move || client::status(&h).ok()).await }
        })
        .await
        .expect("router answers its API");
        Router { port: status.port, home, stop: Some(tx), task: Some(task) }
    }

    /// Stops it and returns what `serve` returned.
    pub async fn stop(mut self) -> Result<(), RouterError> {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task).await.expect("router stops").unwrap()
    }

    /// Waits for a full rescan (deterministic: no sleeping).
    pub async fn rescan(&self) {
        let h = self.home.clone();
        blocking(move || client::rescan(&h)).await.unwrap();
    }

    pub fn url_host(&self, host: &str) -> String {
        format!("{host}:{}", self.port)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Polls `f` until it yields `Some` or `limit` passes.
pub async fn poll<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
