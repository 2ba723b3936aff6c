//! `AGENTFS_SYNC_HOSTS=1`: the router keeps the hosts file's agentfs block
//! (`agentfs_registry::hosts`, which changes nothing else) in step with its
//! routes, for programs that do not resolve `*.localhost` themselves. After
//! each table change whose set of hosts differs from the last one written,
//! the block is rewritten off the request path; a failure (no right to write
//! the file, an edit meanwhile) is logged once per reason and tried again at
//! the next change.

use std::sync::{Arc, Mutex};

use agentfs_registry::names::host_of_url;

use crate::state::Shared;
use crate::table::Table;

/// What was last written (or last failed), so that nothing is written twice.
#[derive(Default)]
pub struct HostSync {
    last: Mutex<Option<Vec<String>>>,
    last_error: Mutex<Option<String>>,
}

/// Every host of the table: apps, instances, their ports, static routes.
pub fn hosts_of(table: &Table) -> Vec<String> {
    let view = table.view();
    let mut urls: Vec<&str> = Vec::new();
    for app in &view.apps {
        urls.push(&app.url);
        for i in &app.instances {
            urls.push(&i.url);
            urls.extend(i.ports.iter().map(|p| p.url.as_str()));
        }
    }
    let mut hosts: Vec<String> = urls.into_iter().filter_map(|u| host_of_url(u).map(str::to_owned)).collect();
    hosts.extend(view.static_routes.iter().map(|s| s.host.clone()));
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// With `sync_hosts` on: writes the block for the routes now, and again
/// after every table change, until the router stops.
pub fn start(shared: &Arc<Shared>) {
    if !shared.config.sync_hosts {
        return;
    }
    let (shared, sync) = (shared.clone(), Arc::new(HostSync::default()));
    after_change(&shared, &sync);
    tokio::spawn(async move {
        let mut changes = shared.subscribe();
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shared.stopped() => return,
            }
            after_change(&shared, &sync);
        }
    });
}

/// After a table change: rewrites the block if the hosts changed.
pub fn after_change(shared: &Arc<Shared>, sync: &Arc<HostSync>) {
    let hosts = hosts_of(&shared.table());
    {
        let Ok(mut last) = sync.last.lock() else { return };
        if last.as_ref() == Some(&hosts) {
            return;
        }
        *last = Some(hosts.clone());
    }
    let sync = sync.clone();
    tokio::task::spawn_blocking(move || {
        let path = agentfs_registry::hosts::path();
        let block = agentfs_registry::hosts::block(&hosts);
        match agentfs_registry::hosts::update(&path, Some(&block)) {
            Ok(changed) => {
                if changed {
                    tracing::info!(file = %path.display(), hosts = hosts.len(), "hosts file updated");
                }
                *sync.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => {
                let why = e.to_string();
                let mut last_error = sync.last_error.lock().unwrap_or_else(|p| p.into_inner());
                if last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(error = %why, "cannot keep the hosts file in sync");
                    *last_error = Some(why);
                }
                // Try again at the next change.
                *sync.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
    });
}
