//! Listeners grouped the way hosts address them: app → instance → port →
//! replicas. Encodes the rules that the router, `agentfs ps` and the banner
//! must agree on: an app's default instance is its earliest-started one, and
//! an instance's primary port is the one chosen with `wrap --port` (or
//! `AGENTFS_PORT`) while it listens, else the first port whose answer to
//! `GET /` was `text/html` (the front end, probed by the wrapper), else the
//! first it listened on.

use std::collections::BTreeMap;

use crate::names::Label;
use crate::record::WrapperRecord;
use crate::scan::Listener;

/// One instance of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub app: Label,
    pub instance: Label,
    /// Start of its earliest listener.
    pub started_at_ms: u64,
    /// The port its plain URL reaches (see [`choose_primary`]; the first it
    /// listened on until then).
    pub primary_port: u16,
    /// Port → replicas, earliest first.
    pub ports: BTreeMap<u16, Vec<Listener>>,
}

impl Instance {
    /// The replicas serving `port`, or the primary port without one.
    pub fn replicas(&self, port: Option<u16>) -> Option<&[Listener]> {
        self.ports.get(&port.unwrap_or(self.primary_port)).map(Vec::as_slice)
    }
}

/// One app and its instances, default (earliest-started) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub app: Label,
    pub instances: Vec<Instance>,
}

impl App {
    pub fn default_instance(&self) -> Option<&Instance> {
        self.instances.first()
    }

    pub fn instance(&self, label: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.instance.as_str() == label)
    }
}

/// Groups listeners (already filtered to the live ones) by app, sorted by name.
pub fn group(listeners: impl IntoIterator<Item = Listener>) -> BTreeMap<Label, App> {
    let mut by_instance: BTreeMap<(Label, Label), Vec<Listener>> = BTreeMap::new();
    for l in listeners {
        by_instance.entry((l.app().clone(), l.instance().clone())).or_default().push(l);
    }
    let mut apps: BTreeMap<Label, App> = BTreeMap::new();
    for ((app, instance), mut ls) in by_instance {
        ls.sort_by(|a, b| (a.started_at_ms, a.port(), &a.stem).cmp(&(b.started_at_ms, b.port(), &b.stem)));
        let Some(first) = ls.first() else { continue };
        let (started_at_ms, primary_port) = (first.started_at_ms, first.port());
        let mut ports: BTreeMap<u16, Vec<Listener>> = BTreeMap::new();
        for l in ls {
            ports.entry(l.port()).or_default().push(l);
        }
        let inst = Instance { app: app.clone(), instance, started_at_ms, primary_port, ports };
        apps.entry(app.clone()).or_insert_with(|| App { app, instances: Vec::new() }).instances.push(inst);
    }
    for app in apps.values_mut() {
        app.instances.sort_by(|a, b| (a.started_at_ms, &a.instance).cmp(&(b.started_at_ms, &b.instance)));
    }
    apps
}

/// Applies the wrappers' choices (`port`, then `front_port`) to the
/// primary ports of their instances, where that port listens.
pub fn choose_primary(apps: &mut BTreeMap<Label, App>, wrappers: &[WrapperRecord]) {
    for app in apps.values_mut() {
        for inst in &mut app.instances {
            let mine = wrappers.iter().filter(|w| w.app == inst.app && w.instance == inst.instance);
            let mut choices = mine.clone().filter_map(|w| w.port).chain(mine.filter_map(|w| w.front_port));
            if let Some(p) = choices.find(|p| inst.ports.contains_key(p)) {
                inst.primary_port = p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Target;
    use crate::runfile::SocketName;

    fn l(app: &str, inst: &str, port: u16, started: u64, replica: Option<u32>) -> Listener {
        let mut name = SocketName::new(Label::parse(app).unwrap(), Label::parse(inst).unwrap(), port);
        if let Some(pid) = replica {
            name = name.with_replica(pid, 1);
        }
        Listener {
            stem: name.stem(),
            target: Target::Unix(format!("/r/{}.sock", name.stem()).into()),
            name,
            sidecar: None,
            started_at_ms: started,
            pid: None,
            ino: None,
        }
    }

    #[test]
    fn default_instance_is_earliest_and_primary_port_is_first() {
        let apps = group(vec![
            l("shop", "feat", 5173, 30, None),
            l("shop", "main", 8080, 25, None),
            l("shop", "main", 3000, 10, None),
            l("shop", "feat", 3000, 40, None),
            l("blog", "main", 4000, 50, None),
        ]);
        let shop = &apps[&Label::parse("shop").unwrap()];
        assert_eq!(shop.default_instance().unwrap().instance.as_str(), "main");
        let main = shop.instance("main").unwrap();
        assert_eq!(main.primary_port, 3000);
        let feat = shop.instance("feat").unwrap();
        assert_eq!(feat.primary_port, 5173);
        assert_eq!(feat.replicas(None).unwrap()[0].port(), 5173);
        assert_eq!(feat.replicas(Some(3000)).unwrap()[0].port(), 3000);
        assert!(feat.replicas(Some(9999)).is_none());
        assert_eq!(apps.keys().map(Label::as_str).collect::<Vec<_>>(), ["blog", "shop"]);
    }

    #[test]
    fn replicas_share_a_port_in_start_order() {
        let apps = group(vec![l("api", "main", 8000, 20, Some(7)), l("api", "main", 8000, 10, None)]);
        let api = &apps[&Label::parse("api").unwrap()];
        let reps = api.default_instance().unwrap().replicas(None).unwrap();
        assert_eq!(reps.len(), 2);
        assert_eq!(reps[0].name.replica, None);
        assert_eq!(reps[1].name.replica.unwrap().pid, 7);
    }

    #[test]
    fn a_chosen_port_then_the_front_end_is_primary_where_it_listens() {
        let w = |port: Option<u16>, front_port: Option<u16>| WrapperRecord {
            v: 1,
            app: Label::parse("pair").unwrap(),
            instance: Label::parse("a").unwrap(),
            wrapper_pid: 9,
            cmd: vec![],
            cwd: "/".into(),
            started_at_ms: 0,
            pgid: None,
            stop_timeout_secs: None,
            exits: Vec::new(),
            port,
            front_port,
        };
        let primary = |wrappers: &[WrapperRecord]| {
            let mut apps = group(vec![l("pair", "a", 3001, 10, None), l("pair", "a", 5173, 20, None)]);
            choose_primary(&mut apps, wrappers);
            apps[&Label::parse("pair").unwrap()].instances[0].primary_port
        };
        assert_eq!(primary(&[]), 3001, "the first listened");
        assert_eq!(primary(&[w(None, Some(5173))]), 5173, "the front end");
        assert_eq!(primary(&[w(Some(3001), Some(5173))]), 3001, "--port wins");
        assert_eq!(primary(&[w(Some(4000), Some(5173))]), 5173, "a chosen port that does not listen is skipped");
    }
}
