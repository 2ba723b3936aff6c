//! Unit tests of the route table: grammar resolution, replicas, static routes, views.

use super::*;
use agentfs_registry::runfile::SocketName;

fn listener(app: &str, inst: &str, port: u16, started: u64, replica: Option<u32>) -> Listener {
    let mut name = SocketName::new(Label::parse(app).unwrap(), Label::parse(inst).unwrap(), port);
    if let Some(pid) = replica {
        name = name.with_replica(pid, 1);
    }
    Listener {
        stem: name.stem(),
        target: Target::Unix(format!("/run/{}.sock", name.stem()).into()),
        name,
        sidecar: None,
        started_at_ms: started,
        pid: None,
        ino: Some(started),
    }
}

fn table(statics: &StaticRoutes, old: &Table) -> Table {
    let ls = vec![
        listener("shop", "main", 3000, 10, None),
        listener("shop", "main", 8080, 20, None),
        listener("shop", "feat", 3000, 30, None),
        listener("api", "main", 8000, 40, None),
        listener("api", "main", 8000, 50, Some(77)),
    ];
    let w = WrapperRecord {
        v: 1,
        app: Label::parse("blog").unwrap(),
        instance: Label::parse("main").unwrap(),
        wrapper_pid: 5,
        cmd: vec![],
        cwd: "/".into(),
        started_at_ms: 1,
        pgid: None,
        stop_timeout_secs: None,
        exits: Vec::new(),
        port: None,
        front_port: None,
    };
    Table::build(ls, vec![w], statics, old, 7355)
}

fn target(t: &Table, host: &str) -> Option<String> {
    match t.resolve(&Host::parse(host).unwrap()) {
        Lookup::Route(set) => Some(set.candidates().next().unwrap().target.to_string()),
        _ => None,
    }
}

#[test]
fn resolves_by_grammar() {
    let t = table(&StaticRoutes::default(), &Table::default());
    assert_eq!(target(&t, "shop.localhost").unwrap(), "/run/shop.main.3000.sock");
    assert_eq!(target(&t, "feat.shop.localhost").unwrap(), "/run/shop.feat.3000.sock");
    assert_eq!(target(&t, "8080.shop.localhost").unwrap(), "/run/shop.main.8080.sock");
    assert_eq!(target(&t, "8080.main.shop.localhost").unwrap(), "/run/shop.main.8080.sock");
    assert_eq!(target(&t, "8080.feat.shop.localhost"), None);
    assert_eq!(target(&t, "nope.shop.localhost"), None);
    assert!(matches!(t.resolve(&Host::parse("localhost").unwrap()), Lookup::Dashboard));
    assert!(matches!(t.resolve(&Host::parse("blog.localhost").unwrap()), Lookup::Starting(w) if w.wrapper_pid == 5));
    assert!(matches!(t.resolve(&Host::parse("x.blog.localhost").unwrap()), Lookup::Unknown));
}

#[test]
fn replicas_round_robin_and_dead_go_last() {
    let t = table(&StaticRoutes::default(), &Table::default());
    let seen: Vec<_> = (0..4).map(|_| target(&t, "api.localhost").unwrap()).collect();
    assert_ne!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    let Lookup::Route(set) = t.resolve(&Host::parse("api.localhost").unwrap()) else { panic!() };
    set.upstreams[0].mark_dead_for_test();
    for _ in 0..3 {
        let order: Vec<_> = set.candidates().map(|u| u.target.to_string()).collect();
        assert_eq!(order, ["/run/api.main.8000.77-1.sock", "/run/api.main.8000.sock"]);
    }
}

#[test]
fn statics_win_and_upstreams_are_reused() {
    let mut s = StaticRoutes::default();
    s.routes.insert("shop.localhost".into(), "127.0.0.1:9".parse().unwrap());
    s.routes.insert("localhost".into(), "/tmp/x.sock".parse().unwrap());
    let t1 = table(&s, &Table::default());
    assert_eq!(target(&t1, "shop.localhost").unwrap(), "127.0.0.1:9");
    assert_eq!(target(&t1, "localhost").unwrap(), "/tmp/x.sock");
    assert!(matches!(t1.resolve(&Host::parse("agentfs.localhost").unwrap()), Lookup::Dashboard));
    let t2 = table(&s, &t1);
    assert!(t1.same_routes(&t2));
    let up = |t: &Table| match t.resolve(&Host::parse("feat.shop.localhost").unwrap()) {
        Lookup::Route(set) => set.upstreams[0].clone(),
        _ => panic!(),
    };
    assert!(Arc::ptr_eq(&up(&t1), &up(&t2)), "pooled connections survive a table swap");
    let t3 = table(&StaticRoutes::default(), &t2);
    assert!(!t2.same_routes(&t3));
}

#[test]
fn view_lists_default_first_with_urls() {
    let t = table(&StaticRoutes::default(), &Table::default());
    let v = t.view();
    let shop = v.apps.iter().find(|a| a.app == "shop").unwrap();
    assert_eq!(shop.url, "http://shop.localhost:7355");
    assert_eq!(shop.instances[0].instance, "main");
    assert!(shop.instances[0].default);
    assert_eq!(shop.instances[0].ports[1].url, "http://8080.main.shop.localhost:7355");
    assert_eq!(v.starting.len(), 1);
    assert_eq!(t.watched_pids(), vec![5]);
}

#[test]
fn wrappers_of_listening_instances_are_watched_too() {
    let w = |app: &str, pid: u32| WrapperRecord {
        v: 1,
        app: Label::parse(app).unwrap(),
        instance: Label::parse("main").unwrap(),
        wrapper_pid: pid,
        cmd: vec![],
        cwd: "/".into(),
        started_at_ms: 1,
        pgid: Some(pid + 1),
        stop_timeout_secs: None,
        exits: Vec::new(),
        port: None,
        front_port: None,
    };
    let mut l = listener("shop", "main", 3000, 10, None);
    l.pid = Some(40);
    let t = Table::build(vec![l], vec![w("shop", 30), w("blog", 5)], &StaticRoutes::default(), &Table::default(), 7355);
    assert_eq!(t.view().starting.len(), 1, "shop listens, so only blog is starting");
    assert_eq!(t.watched_pids(), vec![5, 30, 40], "a SIGKILLed wrapper of a live instance is seen at once");
    let again = Table::build(vec![], vec![w("blog", 5)], &StaticRoutes::default(), &t, 7355);
    assert!(!again.same_routes(&t));
}

#[test]
fn over_https_switches_every_url_and_nothing_else() {
    let t = table(&StaticRoutes::default(), &Table::default());
    let v = t.view().clone().over_https();
    let urls: Vec<&str> = v
        .apps
        .iter()
        .flat_map(|a| std::iter::once(a.url.as_str()).chain(a.instances.iter().map(|i| i.url.as_str())))
        .collect();
    assert!(urls.iter().all(|u| u.starts_with("https://") && u.ends_with(":7355")), "{urls:?}");
    assert_eq!(v.apps[0].instances[0].ports[0].url, "https://8000.main.api.localhost:7355");
    assert_eq!(v.apps.len(), t.view().apps.len());
}
