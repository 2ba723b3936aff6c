//! Seccomp interception (Linux): a statically linked server, which the shim
//! cannot enter, binding a fixed port — on 0.0.0.0, `::` and 127.0.0.1,
//! directly and as the child of a shell script — runs as several instances
//! side by side, each routed, its sidecar naming the port it asked for;
//! within one instance a second holder of the port gets EADDRINUSE, as TCP
//! says, and a client of the instance (static or with the shim, IPv4 or
//! IPv6) that connects to the port reaches its own instance's server;
//! nothing is left in run/ after SIGTERM. With `AGENTFS_SECCOMP=0` the
//! listener scan routes the first copy with its notice and the second
//! collides. (Go servers: tests/go.rs.)

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use support::*;

const START: Duration = Duration::from_secs(10);

/// A test's environment, if seccomp interception is available here.
fn seccomp_env(tag: &str) -> Option<Env> {
    let env = Env::new(tag);
    if !seccomp_available(&env) {
        eprintln!("SKIP: seccomp interception is not available here (see `agentfs doctor`)");
        return None;
    }
    Some(env)
}

fn static_server(dir: &TempDir) -> PathBuf {
    compile_c("static_fixed.c", dir.path(), &["-static"])
}

#[test]
fn static_servers_on_one_port_run_side_by_side() {
    let Some(env) = seccomp_env("seccomp") else { return };
    let build = TempDir::new("seccomp-build");
    let exe = static_server(&build);
    let exe = exe.to_str().unwrap();
    let port = free_port().to_string();
    let script = format!("{exe} 127.0.0.1 {port}; true");
    let dirs = [TempDir::new("sc-a"), TempDir::new("sc-b"), TempDir::new("sc-c")];
    let copies = [
        (wrap_in(&env, dirs[0].path(), &["--name", "st", "--instance", "one", "--", exe, "0.0.0.0", &port]), "one"),
        (wrap_in(&env, dirs[1].path(), &["--name", "st", "--instance", "two", "--", exe, "::", &port]), "two"),
        (wrap_in(&env, dirs[2].path(), &["--name", "st", "--instance", "three", "--", "sh", "-c", &script]), "three"),
    ];
    let mut bodies = BTreeSet::new();
    for (p, inst) in &copies {
        let r = env.wait_routed(&format!("{inst}.st.localhost"), START);
        assert!(r.body.starts_with("static pid"), "{inst}: {r:?}");
        bodies.insert(r.body);
        assert!(!p.stderr().contains("a second copy will collide"), "{inst}: {}", p.stderr());
    }
    assert_eq!(bodies.len(), 3, "each copy answers for itself: {bodies:?}");
    let said = copies[0].0.stderr();
    assert!(said.contains("cannot load the shim (statically linked); its binds are converted by seccomp"), "{said}");
    assert!(!said.contains("listens on TCP"), "the wrap line named it already: {said}");
    let child = format!("listens on TCP 127.0.0.1:{port}, which the shim cannot enter (statically linked); converted");
    let said = wait_stderr(&copies[2].0, &child, START);
    assert!(said.contains(&format!("routed as its port {port}")), "{said}");
    for (inst, family, addr, target) in [
        ("one", "ipv4", "0.0.0.0", "127.0.0.1:"),
        ("two", "ipv6", "::", "127.0.0.1:"),
        ("three", "ipv4", "127.0.0.1", "127.0.0.1:"),
    ] {
        let sc = env.home.sidecar(&format!("st.{inst}.{port}"));
        assert_eq!((sc["family"].as_str(), sc["addr"].as_str()), (Some(family), Some(addr)), "{inst}: {sc}");
        assert_eq!(sc["port"].to_string(), port, "{inst}: {sc}");
        let tcp = sc["tcp"].as_str().unwrap_or_default();
        assert!(tcp.starts_with(target) && !tcp.ends_with(&format!(":{port}")), "{inst}: an ephemeral port: {sc}");
    }
    for (mut p, inst) in copies {
        p.signal(libc::SIGTERM);
        p.wait(START);
        assert!(!env.home.run_files().iter().any(|f| f.starts_with(&format!("st.{inst}."))), "{inst}");
    }
    assert!(env.home.run_files().is_empty(), "{:?}", env.home.run_files());
}

#[test]
fn a_port_held_in_the_instance_is_eaddrinuse() {
    let Some(env) = seccomp_env("seccomp-inuse") else { return };
    let build = TempDir::new("seccomp-inuse");
    let exe = static_server(&build);
    let port = free_port();
    let script = format!("{0} 0.0.0.0 {port} & sleep 0.3; {0} 127.0.0.1 {port}; wait", exe.display());
    let app = wrap_in(&env, build.path(), &["--name", "dup", "--instance", "main", "--", "sh", "-c", &script]);
    let said = wait_stderr(&app, "bind: Address already in use", START);
    assert_eq!(said.matches("Address already in use").count(), 1, "{said}");
    assert!(env.wait_routed("dup.localhost", START).body.starts_with("static pid"));
}

#[test]
fn clients_in_each_instance_reach_their_own_server_on_the_port() {
    let Some(env) = seccomp_env("seccomp-connect") else { return };
    let build = TempDir::new("seccomp-connect");
    let exe = static_server(&build);
    let port = free_port();
    // The server is started in the background, then its clients: the static one (a blocking connect,
    // v4 and v6) and curl (with the shim: a non-blocking connect the shim leaves to the kernel).
    let script = format!(
        "{0} :: {port} & until {0} get 127.0.0.1 {port} 2>/dev/null; do sleep 0.05; done; {0} get ::1 {port}; \
         curl -s http://127.0.0.1:{port}/; wait",
        exe.display()
    );
    let copies = ["one", "two"].map(|inst| {
        let args = ["--name", "cl", "--instance", inst, "--", "sh", "-c", &script];
        (wrap_in(&env, build.path(), &args), inst)
    });
    for (p, inst) in &copies {
        let own = env.wait_routed(&format!("{inst}.cl.localhost"), START).body;
        let out = wait_for(&format!("{inst}'s clients"), START, || {
            let out = p.stdout();
            (out.matches("static pid").count() >= 3).then_some(out)
        });
        assert_eq!(out.matches(own.as_str()).count(), 3, "{inst} reaches its own server ({own}): {out}");
    }
}

#[test]
fn without_seccomp_the_scan_routes_the_first_copy_and_the_second_collides() {
    let env = Env::new("noseccomp");
    let build = TempDir::new("noseccomp");
    let exe = static_server(&build);
    let port = free_port();
    let script = format!("{} 127.0.0.1 {port}", exe.display());
    let args = |inst| ["--name", "off", "--instance", inst, "--", "sh", "-c", &script].map(str::to_owned);
    let one_args = args("one");
    let one = wrap_in_with(&env, build.path(), &one_args.each_ref().map(String::as_str), &[NO_SECCOMP]);
    let said = wait_stderr(&one, "a second copy will collide on that port", START);
    assert!(said.contains(&format!("listens on TCP 127.0.0.1:{port}")), "{said}");
    assert!(env.wait_routed("one.off.localhost", START).body.starts_with("static pid"));
    let two_args = args("two");
    let mut two = wrap_in_with(&env, build.path(), &two_args.each_ref().map(String::as_str), &[NO_SECCOMP]);
    assert_eq!(two.wait(START).code(), Some(1), "{}", two.stderr());
    assert!(two.stderr().contains("bind: Address already in use"), "{}", two.stderr());
    let doctor = env.run_with(&["doctor"], &[NO_SECCOMP]);
    assert!(doctor.stdout.contains("the listener scan") && doctor.stdout.contains("AGENTFS_SECCOMP=0"), "{doctor:?}");
}
