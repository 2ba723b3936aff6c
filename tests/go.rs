//! Go servers on Linux, which the shim cannot enter (their sockets bypass
//! libc, cgo or not). With seccomp interception (the default where the
//! kernel allows it) their binds are converted by the wrapper: copies on one
//! port run side by side. With `AGENTFS_SECCOMP=0` (as where it is not
//! available) `wrap` recognises them (directly, via `go run`, and started by
//! a script), gives them a PORT of their own, routes them over TCP and says
//! so; `doctor` names them either way. The Go programs are built once per
//! test binary, with GOCACHE/GOPATH in a temp dir.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::*;

/// The Go servers (cgo, static), or why there are none.
struct Built {
    dir: TempDir,
    cgo: PathBuf,
    nocgo: PathBuf,
}

fn go_env(c: &mut Command, dir: &Path) {
    c.env("GOCACHE", dir.join("gocache")).env("GOPATH", dir.join("gopath")).env("GO111MODULE", "off");
}

fn built() -> Option<&'static Built> {
    static BUILT: OnceLock<Option<Built>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if Command::new("go").arg("version").output().is_err() {
                eprintln!("SKIP: `go` is not installed (.ci/run installs golang-go)");
                return None;
            }
            let dir = TempDir::new("gobuild");
            let src = dir.path().join("server.go");
            std::fs::copy(fixture("go_server.go"), &src).unwrap();
            let build = |cgo: &str, out: &str| {
                let mut c = Command::new("go");
                go_env(&mut c, dir.path());
                let st = c.args(["build", "-o", out, "server.go"]).env("CGO_ENABLED", cgo).current_dir(dir.path());
                assert!(st.status().unwrap().success(), "go build CGO_ENABLED={cgo}");
                dir.path().join(out)
            };
            let (cgo, nocgo) = (build("1", "srv-cgo"), build("0", "srv-static"));
            Some(Built { dir, cgo, nocgo })
        })
        .as_ref()
}

fn wrap_go(env: &Env, b: &Built, name: &str, instance: &str, cmd: &[&str], vars: &[(&str, &str)]) -> Proc {
    let mut args = vec!["wrap", "--name", name, "--instance", instance, "--"];
    args.extend_from_slice(cmd);
    let mut c = env.agentfs(&args);
    c.envs(vars.iter().copied());
    go_env(&mut c, b.dir.path());
    c.current_dir(b.dir.path());
    Proc::spawn(c)
}

#[test]
fn go_servers_with_and_without_cgo_are_routed_and_named() {
    let Some(b) = built() else { return };
    for (exe, tag) in [(&b.cgo, "cgo"), (&b.nocgo, "static")] {
        let env = Env::new("go");
        let exe = exe.to_str().unwrap();
        let app = wrap_go(&env, b, "gosrv", "main", &[exe], &[NO_SECCOMP]);
        let said = wait_stderr(&app, "cannot load the shim", Duration::from_secs(10));
        assert!(said.contains("a Go program: its sockets bypass libc"), "{tag}: {said}");
        let r = env.wait_routed("gosrv.localhost", Duration::from_secs(10));
        assert!(r.body.contains("go pid"), "{tag}: {r:?}");
        let doctor = env.run_with(&["doctor", "--", exe], &[NO_SECCOMP]);
        assert!(doctor.stdout.contains("is a Go program"), "{tag}: {}", doctor.stdout);
        assert!(doctor.stdout.contains("interception for programs the shim cannot enter: the listener scan"));
    }
}

#[test]
fn two_copies_of_a_go_server_started_by_scripts_run_side_by_side() {
    let Some(b) = built() else { return };
    let env = Env::new("go2");
    let script = format!("exec {}", b.nocgo.display());
    let one = wrap_go(&env, b, "pair", "one", &["sh", "-c", &script], &[NO_SECCOMP]);
    let two = wrap_go(&env, b, "pair", "two", &["sh", "-c", &script], &[NO_SECCOMP]);
    for (p, host) in [(&one, "one.pair.localhost"), (&two, "two.pair.localhost")] {
        let said = wait_stderr(p, "which the shim cannot enter (a Go program", Duration::from_secs(10));
        assert!(said.contains("listens on TCP 127.0.0.1:"), "{said}");
        let r = env.wait_routed(host, Duration::from_secs(5));
        assert!(r.body.contains("go pid"), "{r:?}");
    }
    let (a, z) = (env.get("one.pair.localhost", "/").unwrap().body, env.get("two.pair.localhost", "/").unwrap().body);
    assert_ne!(a, z, "each copy answers for itself (its own PORT from the exec hook)");
}

#[test]
fn go_run_is_routed_and_doctor_says_the_built_binary_is_go() {
    let Some(b) = built() else { return };
    let env = Env::new("gorun");
    let app = wrap_go(&env, b, "gorun", "main", &["go", "run", "server.go"], &[NO_SECCOMP]);
    let said = wait_stderr(&app, "cannot load the shim", Duration::from_secs(10));
    assert!(said.contains("a Go program"), "{said}");
    let r = env.wait_routed("gorun.localhost", Duration::from_secs(25));
    assert!(r.body.contains("go pid"), "{r:?}");
    let doctor = env.run_with(&["doctor", "--", "go", "run", "server.go"], &[NO_SECCOMP]);
    assert!(doctor.stdout.contains("`go run` builds a Go program"), "{}", doctor.stdout);
}

#[test]
fn go_servers_on_one_port_run_side_by_side_with_seccomp() {
    let Some(b) = built() else { return };
    let env = Env::new("goseccomp");
    if !seccomp_available(&env) {
        return eprintln!("SKIP: seccomp interception is not available here (see `agentfs doctor`)");
    }
    let port = free_port().to_string();
    let vars = [("PORT", port.as_str())];
    let (nocgo, cgo) = (b.nocgo.to_str().unwrap(), b.cgo.to_str().unwrap());
    let copies = [
        (wrap_go(&env, b, "side", "nocgo", &[nocgo], &vars), "nocgo"),
        (wrap_go(&env, b, "side", "cgo", &[cgo], &vars), "cgo"),
        (wrap_go(&env, b, "side", "gorun", &["go", "run", "server.go"], &vars), "gorun"),
    ];
    let mut bodies = std::collections::BTreeSet::new();
    for (p, inst) in &copies {
        let said = wait_stderr(p, "its binds are converted by seccomp interception", Duration::from_secs(10));
        assert!(said.contains("a Go program") && !said.contains("PORT="), "{inst}: {said}");
        let r = env.wait_routed(&format!("{inst}.side.localhost"), Duration::from_secs(25));
        assert!(r.body.starts_with("go pid"), "{inst}: {r:?}");
        bodies.insert(r.body);
        let sc = env.home.sidecar(&format!("side.{inst}.{port}"));
        assert_eq!(sc["port"].to_string(), port, "{inst}: the port it asked for: {sc}");
        assert!(sc["tcp"].as_str().is_some_and(|t| t.starts_with("127.0.0.1:")), "{inst}: {sc}");
        assert!(!p.stderr().contains("a second copy will collide"), "{inst}: {}", p.stderr());
    }
    assert_eq!(bodies.len(), 3, "each copy answers for itself: {bodies:?}");
    let doctor = env.run(&["doctor", "--", nocgo]);
    assert!(doctor.stdout.contains("converts its TCP binds with seccomp interception"), "{}", doctor.stdout);
    for (mut p, inst) in copies {
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(Duration::from_secs(10)).code(), Some(143), "{inst}: {}", p.stderr());
    }
    assert!(env.home.run_files().is_empty(), "{:?}", env.home.run_files());
}
