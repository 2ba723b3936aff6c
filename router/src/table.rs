//! Phase 2 of a request: the route table. Built whole from a scan of `run/`
//! plus `routes.json`, then swapped in atomically (see `discovery`): readers
//! never lock and never see half a table. Upstreams (and so their pooled
//! connections) are carried over from the previous table when the listener
//! behind them is the same one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentfs_registry::model::{self, Instance};
use agentfs_registry::names::{Label, hostname, url};
use agentfs_registry::record::{Target, WrapperRecord};
use agentfs_registry::routes::StaticRoutes;
use agentfs_registry::scan::Listener;

use crate::api::{AppView, InstanceView, PortView, RoutesView, StartingView, StaticView};
use crate::crashes::{self, Crash, Down, Listened, Seen};
use crate::host::Host;
use crate::pool::Upstream;

/// The replicas behind one host, tried round-robin.
pub struct ReplicaSet {
    /// What this is, for messages: `shop (main) port 3000` or a static host.
    pub what: String,
    /// `<instance>.<app>` of a discovered listener (the `x-agentfs-instance`
    /// of answers on an original port); empty for a static route.
    pub instance: String,
    pub upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
}

impl ReplicaSet {
    fn new(what: String, instance: String, upstreams: Vec<Arc<Upstream>>) -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet { what, instance, upstreams, next: AtomicUsize::new(0) })
    }

    /// The order to try replicas in: round-robin, the ones last found dead at the end.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        let n = self.upstreams.len();
        let start = if n > 1 { self.next.fetch_add(1, Ordering::Relaxed) % n } else { 0 };
        let ring = move || (0..n).map(move |i| &self.upstreams[(start + i) % n]);
        ring().filter(|u| !u.is_dead()).chain(ring().filter(|u| u.is_dead()))
    }
}

struct InstanceRoutes {
    label: Label,
    primary_port: u16,
    ports: BTreeMap<u16, Arc<ReplicaSet>>,
    /// Ports whose listeners are converted (Unix sockets), with when the
    /// first of them started: the ports mirrored on loopback (see `original`).
    converted: BTreeMap<u16, u64>,
}

struct AppRoutes {
    /// Default (earliest-started) first.
    instances: Vec<InstanceRoutes>,
    /// Instance label → index in `instances`: one hash lookup per request
    /// however many instances an app has.
    by_label: HashMap<String, usize>,
}

impl AppRoutes {
    fn new(instances: Vec<InstanceRoutes>) -> AppRoutes {
        let mut by_label = HashMap::with_capacity(instances.len());
        for (n, i) in instances.iter().enumerate() {
            by_label.entry(i.label.as_str().to_owned()).or_insert(n);
        }
        AppRoutes { instances, by_label }
    }
}

/// What a host resolves to.
pub enum Lookup<'a> {
    Dashboard,
    Route(&'a Arc<ReplicaSet>),
    /// Not listening yet (or restarting), but its wrapper runs: wait for it.
    Starting(&'a WrapperRecord),
    /// It listened, and its listening process crashed while its wrapper runs.
    Crashed(&'a WrapperRecord, &'a Down, &'a Crash),
    Unknown,
}

/// Identity of an upstream across tables: same file and same process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum UpKey {
    Listener { stem: String, ino: Option<u64>, pid: Option<u32>, started_at_ms: u64, target: Target },
    Static { host: String, target: Target },
}

/// An immutable route table.
#[derive(Default)]
pub struct Table {
    pub generation: u64,
    pub router_port: u16,
    apps: HashMap<String, AppRoutes>,
    statics: HashMap<String, Arc<ReplicaSet>>,
    starting: Vec<WrapperRecord>,
    /// Every running wrapper's record.
    live_wrappers: Vec<WrapperRecord>,
    /// Every running wrapper, starting or not: its exit (SIGKILL) means its
    /// tree must be stopped at once (see `reaper`).
    wrapper_pids: Vec<u32>,
    upstreams: BTreeMap<UpKey, Arc<Upstream>>,
    /// Original port → who holds it, earliest-started first.
    originals: BTreeMap<u16, Vec<Holder>>,
    view: RoutesView,
    /// Per running wrapper, the pids that last listened for its instance.
    listened: Listened,
    /// Instances that listened and whose listeners are gone (see `crashes`).
    down: Vec<Down>,
}

/// An instance holding an original port: its app and its index there.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Holder {
    started_at_ms: u64,
    app: String,
    index: usize,
}

impl Table {
    /// No routes yet.
    pub fn empty(router_port: u16) -> Table {
        Table { router_port, ..Table::default() }
    }

    /// Builds a table from live listeners, running wrappers and static
    /// routes, reusing `old`'s upstreams where the listener is unchanged.
    pub fn build(
        listeners: Vec<Listener>,
        wrappers: Vec<WrapperRecord>,
        statics: &StaticRoutes,
        old: &Table,
        router_port: u16,
    ) -> Table {
        let mut t = Table { router_port, live_wrappers: wrappers.clone(), starting: wrappers, ..Table::default() };
        t.starting.sort_by(|a, b| (&a.app, &a.instance, a.wrapper_pid).cmp(&(&b.app, &b.instance, b.wrapper_pid)));
        t.wrapper_pids = t.starting.iter().map(|w| w.wrapper_pid).collect();
        t.wrapper_pids.sort_unstable();
        let mut reuse = |key: UpKey, target: &Target, listener: Option<&Listener>| {
            let up =
                old.upstreams.get(&key).cloned().unwrap_or_else(|| Upstream::new(target.clone(), listener.cloned()));
            t.upstreams.insert(key, up.clone());
            up
        };
        for (host, target) in &statics.routes {
            let up = reuse(UpKey::Static { host: host.clone(), target: target.clone() }, target, None);
            t.statics.insert(host.clone(), ReplicaSet::new(host.clone(), String::new(), vec![up]));
        }
        let mut apps = model::group(listeners);
        model::choose_primary(&mut apps, &t.live_wrappers);
        for (app, a) in apps {
            let instances = a.instances.iter().map(|i| instance_routes(i, &mut reuse)).collect();
            t.apps.insert(app.as_str().to_owned(), AppRoutes::new(instances));
        }
        t.originals = originals(&t.apps);
        t.starting.retain(|w| {
            let listening =
                t.apps.get(w.app.as_str()).is_some_and(|a| a.instances.iter().any(|i| i.label == w.instance));
            !listening
        });
        t.view = t.make_view(statics);
        t
    }

    /// The ports instances converted, each mirrored on loopback while held.
    pub fn original_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.originals.keys().copied()
    }

    /// Port `port` of an instance: `instance` of `app`, or the app's earliest
    /// instance holding it.
    pub fn original_of(&self, port: u16, app: &str, instance: Option<&str>) -> Option<&Arc<ReplicaSet>> {
        let holders = self.originals.get(&port)?;
        let a = self.apps.get(app)?;
        let held = |h: &&Holder| h.app == app && instance.is_none_or(|l| a.instances[h.index].label.as_str() == l);
        let h = holders.iter().find(held)?;
        a.instances[h.index].ports.get(&port)
    }

    /// Port `port` of its earliest-started holder, and that holder's
    /// `<instance>.<app>`.
    pub fn original_holder(&self, port: u16) -> Option<&Arc<ReplicaSet>> {
        let h = self.originals.get(&port)?.first()?;
        self.apps.get(&h.app)?.instances.get(h.index)?.ports.get(&port)
    }

    /// Whether `other` routes exactly as this table does.
    pub fn same_routes(&self, other: &Table) -> bool {
        self.upstreams.keys().eq(other.upstreams.keys())
            && self.starting == other.starting
            && self.wrapper_pids == other.wrapper_pids
            && self.down == other.down
            && self.live_wrappers == other.live_wrappers
            && self.router_port == other.router_port
    }

    /// Resolves a host: static routes first (exact), then the dashboard, then the grammar.
    pub fn resolve(&self, host: &Host<'_>) -> Lookup<'_> {
        if let Some(set) = self.statics.get(host.name()) {
            return Lookup::Route(set);
        }
        if host.is_dashboard() {
            return Lookup::Dashboard;
        }
        let Some(r) = host.app_ref() else { return Lookup::Unknown };
        let inst = self.apps.get(r.app).and_then(|a| match r.instance {
            None => a.instances.first(),
            Some(label) => a.by_label.get(label).and_then(|&n| a.instances.get(n)),
        });
        if let Some(set) = inst.and_then(|i| i.ports.get(&r.port.unwrap_or(i.primary_port))) {
            return Lookup::Route(set);
        }
        let waiting = self
            .starting
            .iter()
            .find(|w| w.app.as_str() == r.app && r.instance.is_none_or(|label| w.instance.as_str() == label));
        let Some(w) = waiting else { return Lookup::Unknown };
        let down = self.down.iter().find(|d| d.wrapper_pid == w.wrapper_pid);
        match down.and_then(|d| d.crash.as_ref().map(|c| (d, c))) {
            Some((d, crash)) => Lookup::Crashed(w, d, crash),
            None => Lookup::Starting(w),
        }
    }

    /// Follows the instances that listened in `old` (see `crashes`):
    /// `swept` are the pids whose files this scan removed as dead.
    pub fn follow_exits(&mut self, old: &Table, swept: &[u32]) {
        let listening = |w: &WrapperRecord| -> Vec<Seen> {
            let Some(a) = self.apps.get(w.app.as_str()) else { return Vec::new() };
            let Some(i) = a.instances.iter().find(|i| i.label == w.instance) else { return Vec::new() };
            let ls = i.ports.values().flat_map(|s| s.upstreams.iter()).filter_map(|u| u.listener.as_ref());
            let seen = |l: &Listener| {
                Some(Seen { pid: l.pid?, cmd: l.sidecar.as_ref().map(|s| s.cmd.clone()).unwrap_or_default() })
            };
            ls.filter_map(seen).collect()
        };
        let world = crashes::World { now_ms: agentfs_registry::liveness::now_ms(), restarting: &crashes::tree_runs };
        let (listened, down) =
            crashes::follow(&self.live_wrappers, listening, (&old.listened, &old.down), swept, &world);
        for v in &mut self.view.starting {
            let d = down.iter().find(|d| d.wrapper_pid == v.wrapper_pid);
            v.crashed = d.and_then(|d| d.crash.as_ref().map(|c| format!("pid {}, {}", d.pid, c.describe())));
        }
        self.listened = listened;
        self.down = down;
    }

    /// The earliest time (ms since the epoch) a crash-or-restart decision is due.
    pub fn decision_due_ms(&self) -> Option<u64> {
        self.down.iter().filter_map(|d| d.deciding_until_ms).min()
    }

    /// The live routes, as the API and the dashboard show them.
    pub fn view(&self) -> &RoutesView {
        &self.view
    }

    /// Wrappers running whose app has not listened yet.
    pub fn starting(&self) -> &[WrapperRecord] {
        &self.starting
    }

    /// Every upstream of a discovered listener.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.upstreams.values().filter_map(|u| u.listener.as_ref())
    }

    /// Pids whose exit changes this table: listeners and wrappers.
    pub fn watched_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.listeners().filter_map(|l| l.pid).collect();
        pids.extend(&self.wrapper_pids);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn make_view(&self, statics: &StaticRoutes) -> RoutesView {
        let port = self.router_port;
        let mut apps: Vec<AppView> = Vec::new();
        let mut names: Vec<&String> = self.apps.keys().collect();
        names.sort();
        for name in names {
            let a = &self.apps[name];
            let Some(first) = a.instances.first() else { continue };
            let app = Label::parse(name).unwrap_or_else(|_| first.label.clone());
            let instances = a.instances.iter().enumerate().map(|(n, i)| instance_view(&app, i, n == 0, port));
            apps.push(AppView {
                app: name.clone(),
                url: url(&hostname(&app, None), port),
                instances: instances.collect(),
            });
        }
        let static_routes = statics
            .routes
            .iter()
            .map(|(h, t)| StaticView { host: h.clone(), url: url(h, port), target: t.to_string() })
            .collect();
        let starting = self
            .starting
            .iter()
            .map(|w| StartingView {
                app: w.app.to_string(),
                instance: w.instance.to_string(),
                wrapper_pid: w.wrapper_pid,
                crashed: None,
                cwd: Some(w.cwd.clone()),
                started_at_ms: w.started_at_ms,
            })
            .collect();
        RoutesView { apps, static_routes, starting, original_ports: Vec::new() }
    }
}

fn instance_routes(
    i: &Instance,
    reuse: &mut impl FnMut(UpKey, &Target, Option<&Listener>) -> Arc<Upstream>,
) -> InstanceRoutes {
    let (mut ports, mut converted) = (BTreeMap::new(), BTreeMap::new());
    for (port, replicas) in &i.ports {
        let ups = replicas
            .iter()
            .map(|l| {
                let key = UpKey::Listener {
                    stem: l.stem.clone(),
                    ino: l.ino,
                    pid: l.pid,
                    started_at_ms: l.started_at_ms,
                    target: l.target.clone(),
                };
                reuse(key, &l.target, Some(l))
            })
            .collect();
        let what = format!("{} ({}) port {port}", i.app, i.instance);
        let instance = format!("{}.{}", i.instance, i.app);
        ports.insert(*port, ReplicaSet::new(what, instance, ups));
        let unix = replicas.iter().filter(|l| matches!(l.target, Target::Unix(_)));
        if let Some(first) = unix.map(|l| l.started_at_ms).min() {
            converted.insert(*port, first);
        }
    }
    InstanceRoutes { label: i.instance.clone(), primary_port: i.primary_port, ports, converted }
}

/// Who holds each converted port, earliest-started first (ties by name).
fn originals(apps: &HashMap<String, AppRoutes>) -> BTreeMap<u16, Vec<Holder>> {
    let mut out: BTreeMap<u16, Vec<Holder>> = BTreeMap::new();
    for (app, a) in apps {
        for (index, i) in a.instances.iter().enumerate() {
            for (port, started_at_ms) in &i.converted {
                out.entry(*port).or_default().push(Holder { started_at_ms: *started_at_ms, app: app.clone(), index });
            }
        }
    }
    for holders in out.values_mut() {
        holders.sort_by(|a, b| (a.started_at_ms, &a.app, a.index).cmp(&(b.started_at_ms, &b.app, b.index)));
    }
    out
}

fn instance_view(app: &Label, i: &InstanceRoutes, default: bool, router_port: u16) -> InstanceView {
    let host = hostname(app, Some(&i.label));
    let ports = i
        .ports
        .iter()
        .map(|(p, set)| PortView {
            port: *p,
            url: url(&format!("{p}.{host}"), router_port),
            targets: set.upstreams.iter().map(|u| u.target.to_string()).collect(),
            pids: set.upstreams.iter().filter_map(|u| u.listener.as_ref().and_then(|l| l.pid)).collect(),
        })
        .collect();
    let started_at_ms = i
        .ports
        .values()
        .flat_map(|s| s.upstreams.iter().filter_map(|u| u.listener.as_ref().map(|l| l.started_at_ms)))
        .min()
        .unwrap_or(0);
    let cwd = i
        .ports
        .values()
        .flat_map(|s| s.upstreams.iter())
        .find_map(|u| Some(u.listener.as_ref()?.sidecar.as_ref()?.cwd.clone()));
    InstanceView {
        instance: i.label.to_string(),
        default,
        url: url(&host, router_port),
        primary_port: i.primary_port,
        started_at_ms,
        ports,
        cwd,
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
