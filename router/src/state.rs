//! What every part of a running router shares: the configuration, the
//! current route table (an `ArcSwap`: lock-free loads on every request), a
//! change signal for requests that wait for an app to start, the rescan
//! requests, and the stop signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::table::Table;

/// State of one running router.
pub struct Shared {
    pub config: Config,
    /// The HTTP port in use.
    pub port: u16,
    /// Addresses listened on.
    pub listening: Vec<String>,
    /// The listeners were inherited (socket activation), not bound here.
    pub inherited: bool,
    pub started_at_ms: u64,
    table: ArcSwap<Table>,
    generation: watch::Sender<u64>,
    rescan_wanted: AtomicU64,
    rescan_notify: Notify,
    rescan_done: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    /// Requests now waiting for a starting instance.
    pub waiting: std::sync::atomic::AtomicUsize,
    /// Serialises edits of `routes.json`.
    pub routes_lock: tokio::sync::Mutex<()>,
    /// The listeners on the apps' original ports.
    pub originals: crate::original::Originals,
    /// Pids whose listener files a request removed (a refused connect) since
    /// the last scan: the next scan decides crash-or-restart for them as for
    /// files it removed itself.
    swept: std::sync::Mutex<Vec<u32>>,
    /// The dashboard page's token for requests that change something (see `stopper`).
    pub token: Option<String>,
}

impl Shared {
    pub fn new(config: Config, port: u16, (listening, inherited): (Vec<String>, bool)) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            port,
            listening,
            inherited,
            started_at_ms: agentfs_registry::liveness::now_ms(),
            table: ArcSwap::from_pointee(Table::empty(port)),
            generation: watch::Sender::new(0),
            rescan_wanted: AtomicU64::new(0),
            rescan_notify: Notify::new(),
            rescan_done: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            routes_lock: tokio::sync::Mutex::new(()),
            originals: crate::original::Originals::default(),
            token: crate::stopper::new_token(),
            swept: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The routes as the API and the dashboard's JSON show them: the
    /// table's, with the original ports' state, as `https://` once the CA
    /// is trusted.
    pub fn routes_view(&self, table: &Table) -> crate::api::RoutesView {
        let mut view = table.view().clone();
        view.original_ports = self.originals.view(table);
        // Port 80's URLs carry no port, and https on 80 would need one.
        if self.port != 80 && agentfs_registry::trusted::is_trusted(&self.config.home) {
            view = view.over_https();
        }
        view
    }

    /// The dashboard's URL (`http://localhost:7355/`), linked from every page.
    pub fn dashboard_url(&self) -> String {
        let https = self.port != 80 && agentfs_registry::trusted::is_trusted(&self.config.home);
        format!("{}/", agentfs_registry::names::Origin { https, port: self.port }.url("localhost"))
    }

    /// Notes that a request removed the files of `pid`'s dead listener.
    pub fn note_swept(&self, pid: Option<u32>) {
        self.swept.lock().unwrap_or_else(|p| p.into_inner()).extend(pid);
    }

    /// The pids noted by [`Shared::note_swept`] since the last call.
    pub fn take_swept(&self) -> Vec<u32> {
        std::mem::take(&mut *self.swept.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current table (lock-free).
    pub fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Swaps in a new table and wakes requests waiting for a route.
    pub fn publish(&self, mut table: Table) {
        let generation = *self.generation.borrow() + 1;
        table.generation = generation;
        self.table.store(Arc::new(table));
        self.generation.send_replace(generation);
    }

    /// A receiver that sees every later [`Shared::publish`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Asks discovery for a rescan, without waiting.
    pub fn poke(&self) {
        self.rescan_wanted.fetch_add(1, Ordering::AcqRel);
        self.rescan_notify.notify_one();
    }

    /// Asks for a rescan and waits until one that started after the request
    /// has finished (or the router stops).
    pub async fn rescan(&self) {
        let ticket = self.rescan_wanted.fetch_add(1, Ordering::AcqRel) + 1;
        let mut done = self.rescan_done.subscribe();
        self.rescan_notify.notify_one();
        let mut stop = self.stop.subscribe();
        tokio::select! {
            _ = done.wait_for(|d| *d >= ticket) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// For discovery: waits for a rescan request; returns the ticket to report.
    pub async fn rescan_requested(&self) -> u64 {
        self.rescan_notify.notified().await;
        self.rescan_wanted.load(Ordering::Acquire)
    }

    /// The ticket a scan starting now will satisfy.
    pub fn rescan_ticket(&self) -> u64 {
        self.rescan_wanted.load(Ordering::Acquire)
    }

    /// For discovery: a scan that covers requests up to `ticket` is done.
    pub fn rescan_finished(&self, ticket: u64) {
        self.rescan_done.send_if_modified(|d| {
            let newer = ticket > *d;
            if newer {
                *d = ticket;
            }
            newer
        });
    }

    /// Asks the router to stop (drain, then exit).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`Shared::stop`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}
