//! Which instances `agentfs ps` shows as `crashed`: the router's judgement
//! when it runs (`GET /v1/routes`, whose `starting` entries carry `crashed`;
//! it remembers what listened, see the router's `crashes`), else the
//! wrapper records alone: a wrapper whose newest recorded exit is a crash
//! (not a restart) and whose instance listens nowhere.

use std::collections::BTreeMap;

use agentfs_registry::Home;
use agentfs_registry::record::WrapperRecord;
use agentfs_router::client;

/// Wrapper pid → how its instance's listener ended.
pub type Crashes = BTreeMap<u32, String>;

/// The crashed instances among `idle` (wrappers whose instance listens nowhere).
pub fn find(home: &Home, idle: &[&WrapperRecord]) -> Crashes {
    if let Ok(view) = client::routes(home) {
        return view.starting.into_iter().filter_map(|s| Some((s.wrapper_pid, s.crashed?))).collect();
    }
    idle.iter()
        .filter_map(|w| {
            let e = w.exits.last().filter(|e| !e.looks_like_restart())?;
            Some((w.wrapper_pid, format!("pid {}, {}", e.pid, e.describe())))
        })
        .collect()
}
