use super::*;
use crate::record::{Family, VERSION};
use crate::testutil::TempDir;
use std::os::unix::net::UnixListener;

fn label(s: &str) -> Label {
    Label::parse(s).unwrap()
}

fn sidecar(run: &Path, stem: &str, app: &str, inst: &str, port: u16, started: u64) -> Sidecar {
    Sidecar {
        v: VERSION,
        app: label(app),
        instance: label(inst),
        port,
        socket: Some(socket_path(run, stem)),
        tcp: None,
        pid: std::process::id(),
        wrapper_pid: None,
        family: Family::Ipv4,
        addr: "127.0.0.1".parse().unwrap(),
        cmd: vec!["x".into()],
        cwd: "/".into(),
        started_at_ms: started,
    }
}

fn listen(run: &Path, stem: &str) -> UnixListener {
    UnixListener::bind(socket_path(run, stem)).unwrap()
}

#[test]
fn sidecars_bare_sockets_and_wrappers() {
    let t = TempDir::new("scan");
    let run = t.path();
    let _a = listen(run, "shop.main.3000");
    record::write(&sidecar_path(run, "shop.main.3000"), &sidecar(run, "shop.main.3000", "shop", "main", 3000, 20))
        .unwrap();
    let _b = listen(run, "shop.feat.3000");
    let w = WrapperRecord {
        v: VERSION,
        app: label("shop"),
        instance: label("feat"),
        wrapper_pid: 9,
        cmd: vec![],
        cwd: "/".into(),
        started_at_ms: 1,
        pgid: None,
        stop_timeout_secs: None,
        exits: Vec::new(),
        port: None,
        front_port: None,
    };
    record::write(&run.join("shop.feat.wrapper-9.json"), &w).unwrap();
    fs::write(run.join(".shop.main.3000.json.1-1.tmp"), b"partial").unwrap();

    let snap = scan(run).unwrap();
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    assert_eq!(snap.wrappers, vec![w]);
    let stems: Vec<_> = snap.listeners.iter().map(|l| l.stem.as_str()).collect();
    assert_eq!(stems, ["shop.main.3000", "shop.feat.3000"], "sorted by start time; bare socket uses its mtime");
    let bare = &snap.listeners[1];
    assert_eq!(bare.sidecar, None);
    assert_eq!(bare.target, Target::Unix(socket_path(run, "shop.feat.3000")));
    assert_eq!(bare.pid, None);
    assert!(bare.maybe_alive());
}

#[test]
fn hashed_sockets_need_their_sidecar() {
    let t = TempDir::new("scan");
    let run = t.path();
    let stem = crate::runfile::hashed_stem("shop.main.3000");
    let _s = listen(run, &stem);
    let snap = scan(run).unwrap();
    assert!(snap.listeners.is_empty());
    assert_eq!(snap.problems.len(), 1);
    record::write(&sidecar_path(run, &stem), &sidecar(run, &stem, "shop", "main", 3000, 5)).unwrap();
    let snap = scan(run).unwrap();
    assert_eq!(snap.listeners.len(), 1);
    assert_eq!(snap.listeners[0].name, SocketName::new(label("shop"), label("main"), 3000));
}

#[test]
fn symlinks_plain_files_and_mismatches_are_not_routed() {
    let t = TempDir::new("scan");
    let run = t.path().join("run");
    fs::create_dir(&run).unwrap();
    let elsewhere = t.path().join("other.sock");
    let _o = UnixListener::bind(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, socket_path(&run, "evil.main.80")).unwrap();
    fs::write(socket_path(&run, "plain.main.80"), b"").unwrap();
    let _m = listen(&run, "shop.main.3000");
    record::write(&sidecar_path(&run, "shop.main.3000"), &sidecar(&run, "shop.main.3000", "shop", "main", 4000, 1))
        .unwrap();
    let mut sc = sidecar(&run, "x.main.1", "x", "main", 1, 1);
    sc.socket = Some(elsewhere.clone());
    record::write(&sidecar_path(&run, "x.main.1"), &sc).unwrap();

    let snap = scan(&run).unwrap();
    assert!(snap.listeners.is_empty(), "{:?}", snap.listeners);
    assert_eq!(snap.problems.len(), 4, "{:?}", snap.problems);
    assert!(snap.problems.iter().any(|p| p.why.contains("symlink")));
    assert!(snap.problems.iter().any(|p| p.why.contains("not a socket")));
    assert!(snap.problems.iter().any(|p| p.why.contains("differs from its file name")));
    assert!(snap.problems.iter().any(|p| p.why.contains("points at")));
}

#[test]
fn orphan_sidecars_are_reported() {
    let t = TempDir::new("scan");
    let run = t.path();
    record::write(&sidecar_path(run, "shop.main.3000"), &sidecar(run, "shop.main.3000", "shop", "main", 3000, 1))
        .unwrap();
    let snap = scan(run).unwrap();
    assert_eq!(snap.orphans.len(), 1);
    assert!(snap.listeners.is_empty());
}

#[test]
fn removal_takes_exactly_what_was_found() {
    let t = TempDir::new("scan");
    let run = t.path();
    let stem = "shop.main.3000";
    let _s = listen(run, stem);
    record::write(&sidecar_path(run, stem), &sidecar(run, stem, "shop", "main", 3000, 1)).unwrap();
    let found = scan(run).unwrap().listeners.remove(0);

    let mut newer = sidecar(run, stem, "shop", "main", 3000, 2);
    newer.pid += 1;
    record::write(&sidecar_path(run, stem), &newer).unwrap();
    remove_listener_files(run, &found).unwrap();
    assert!(socket_path(run, stem).exists(), "a listener that replaced the one found is left alone");
    assert!(sidecar_path(run, stem).exists());

    let found = scan(run).unwrap().listeners.remove(0);
    remove_listener_files(run, &found).unwrap();
    assert_eq!(fs::read_dir(run).unwrap().count(), 0);
}

#[test]
fn tcp_routes_must_be_loopback() {
    let t = TempDir::new("scan");
    let run = t.path();
    let mut sc = sidecar(run, "go.main.8080", "go", "main", 8080, 1);
    sc.socket = None;
    sc.tcp = Some("127.0.0.1:41000".parse().unwrap());
    record::write(&sidecar_path(run, "go.main.8080"), &sc).unwrap();
    let snap = scan(run).unwrap();
    assert_eq!(snap.listeners[0].target, Target::Tcp { host: "127.0.0.1".into(), port: 41000 });
    sc.tcp = Some("10.0.0.1:41000".parse().unwrap());
    record::write(&sidecar_path(run, "go.main.8080"), &sc).unwrap();
    let snap = scan(run).unwrap();
    assert!(snap.listeners.is_empty());
    assert_eq!(snap.problems.len(), 1);
}

#[test]
fn missing_run_dir_is_empty() {
    let snap = scan(Path::new("/nonexistent/agentfs/run")).unwrap();
    assert!(snap.listeners.is_empty() && snap.problems.is_empty());
}

#[test]
fn orphans_and_wrapper_records_are_removed_only_if_unchanged() {
    let t = TempDir::new("scan");
    let run = t.path();
    let stem = "shop.main.3000";
    record::write(&sidecar_path(run, stem), &sidecar(run, stem, "shop", "main", 3000, 1)).unwrap();
    let (orphan_stem, orphan) = scan(run).unwrap().orphans.remove(0);
    let mut newer = orphan.clone();
    newer.started_at_ms += 1;
    record::write(&sidecar_path(run, stem), &newer).unwrap();
    remove_orphan_sidecar(run, &orphan_stem, &orphan).unwrap();
    assert!(sidecar_path(run, stem).exists(), "a newer sidecar is left alone");
    remove_orphan_sidecar(run, &orphan_stem, &newer).unwrap();
    assert!(!sidecar_path(run, stem).exists());

    let w = WrapperRecord {
        v: VERSION,
        app: label("shop"),
        instance: label("main"),
        wrapper_pid: 9,
        cmd: vec![],
        cwd: "/".into(),
        started_at_ms: 1,
        pgid: None,
        stop_timeout_secs: None,
        exits: Vec::new(),
        port: None,
        front_port: None,
    };
    record::write(&run.join("shop.main.wrapper-9.json"), &w).unwrap();
    remove_wrapper_record(run, &w).unwrap();
    remove_wrapper_record(run, &w).unwrap();
    assert_eq!(fs::read_dir(run).unwrap().count(), 0);
}

#[test]
fn instance_scans_see_only_that_instance() {
    let t = TempDir::new("scan");
    let run = t.path();
    let _a = listen(run, "shop.main.3000");
    let _b = listen(run, "shop.feat.3000");
    let _c = listen(run, "shopx.main.3000");
    let snap = scan_instance(run, &label("shop"), &label("main")).unwrap();
    assert_eq!(snap.listeners.len(), 1);
    assert_eq!(snap.listeners[0].stem, "shop.main.3000");
}
