//! `agentfs hosts` on a copy of a hosts file (`AGENTFS_HOSTS_FILE`): sync
//! rewrites only agentfs's block (a stale one included) and leaves every
//! other byte as it was, status says whether it is in sync, clean removes the
//! block, and 100 syncs at once leave one well-formed block and the user's
//! lines. (An edit between read and write is refused: registry's unit tests.)

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const BEFORE: &str = "127.0.0.1\tlocalhost\n::1     localhost ip6-localhost\n# my own\n10.0.0.5 nas.lan\n";
const AFTER: &str = "192.168.1.9 printer # keep me\n";
const BEGIN: &str = "# >>> agentfs: routed *.localhost hosts (managed by `agentfs hosts`; edits here are replaced) >>>";

#[test]
fn sync_status_and_clean_change_only_the_block() {
    let env = Env::new("hosts");
    let dir = TempDir::new("hosts");
    let file = dir.path().join("hosts");
    let stale = format!("{BEFORE}{BEGIN}\n127.0.0.1 gone.localhost\n::1 gone.localhost\n# <<< agentfs <<<\n{AFTER}");
    std::fs::write(&file, &stale).unwrap();
    let vars = [("AGENTFS_HOSTS_FILE", file.to_str().unwrap())];

    let app = wrap_in(
        &env,
        dir.path(),
        &["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"],
    );
    wait_stderr(&app, "agentfs: shop (main) →", Duration::from_secs(30));
    assert_eq!(env.run(&["route", "api.localhost", "9"]).code, Some(0));
    let before = env.run_with(&["hosts", "status"], &vars);
    assert_eq!(before.code, Some(1), "out of sync: {before:?}");
    assert!(
        before.stdout.contains("missing: main.shop.localhost") && before.stdout.contains("stale:   gone.localhost")
    );

    let r = env.run_with(&["hosts", "sync"], &vars);
    assert_eq!(r.code, Some(0), "{r:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(BEFORE) && text.ends_with(AFTER), "everything else is byte-identical:\n{text}");
    let block = &text[BEFORE.len()..text.len() - AFTER.len()];
    for h in ["api.localhost", "main.shop.localhost", "shop.localhost"] {
        assert!(block.contains(&format!("127.0.0.1 {h}\n::1 {h}\n")), "{h}:\n{block}");
    }
    assert!(!block.contains("gone.localhost"), "{block}");
    let status: Value = serde_json::from_str(&env.run_with(&["hosts", "status", "--json"], &vars).stdout).unwrap();
    assert_eq!((status["v"].clone(), status["in_sync"].clone()), (1.into(), true.into()), "{status}");

    let r = env.run_with(&["hosts", "clean"], &vars);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{BEFORE}{AFTER}"));
    drop(app);
}

#[test]
fn a_hundred_syncs_at_once_leave_one_block_and_the_users_lines() {
    let env = Env::new("hostsrace");
    let dir = TempDir::new("hostsrace");
    let file = dir.path().join("hosts");
    std::fs::write(&file, format!("{BEFORE}{AFTER}")).unwrap();
    assert_eq!(env.run(&["route", "api.localhost", "9"]).code, Some(0));
    let syncs: Vec<Proc> = (0..100)
        .map(|_| {
            let mut c = env.agentfs(&["hosts", "sync"]);
            c.env("AGENTFS_HOSTS_FILE", &file);
            Proc::spawn(c)
        })
        .collect();
    for mut p in syncs {
        assert!(p.wait(Duration::from_secs(60)).success(), "{}", p.output());
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(&format!("{BEFORE}{AFTER}")), "{text}");
    assert_eq!(text.matches("# >>> agentfs").count(), 1, "{text}");
    assert!(text.ends_with("127.0.0.1 api.localhost\n::1 api.localhost\n# <<< agentfs <<<\n"), "{text}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
}

#[test]
fn the_router_keeps_the_block_in_step_with_agentfs_sync_hosts() {
    let env = Env::new("hostsrouter");
    let dir = TempDir::new("hostsrouter");
    let file = dir.path().join("hosts");
    std::fs::write(&file, format!("{BEFORE}{AFTER}")).unwrap();
    let vars = [("AGENTFS_SYNC_HOSTS", "1"), ("AGENTFS_HOSTS_FILE", file.to_str().unwrap())];
    assert_eq!(env.run_with(&["router", "start"], &vars).code, Some(0));
    let mut app = wrap_in(
        &env,
        dir.path(),
        &["--name", "shop", "--instance", "feat", "--", "python3", "-m", "http.server", "8000"],
    );
    let listed = |h: &str| std::fs::read_to_string(&file).unwrap().contains(&format!("127.0.0.1 {h}\n::1 {h}\n"));
    wait_for("the instance in the hosts file", Duration::from_secs(5), || listed("feat.shop.localhost").then_some(()));
    assert!(listed("shop.localhost"));
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
    wait_for("the instance gone from the hosts file", Duration::from_secs(5), || {
        (!listed("feat.shop.localhost")).then_some(())
    });
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(BEFORE) && text.ends_with(&format!("{AFTER}{BEGIN}\n# <<< agentfs <<<\n")), "{text}");
}
