//! Go servers on Linux, which the shim cannot enter (their sockets bypass
//! libc, cgo or not): `wrap` recognises them (directly, via `go run`, and
//! started by a script), gives them a PORT of their own, routes them over
//! TCP and says so; `doctor` names them. The Go programs are built once per
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

fn wrap_go(env: &Env, b: &Built, name: &str, instance: &str, cmd: &[&str]) -> Proc {
    let mut args = vec!["wrap", "--name", name, "--instance", instance, "--"];
    args.extend_from_slice(cmd);
    let mut c = env.agentfs(&args);
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
        let app = wrap_go(&env, b, "gosrv", "main", &[exe]);
        let said = wait_stderr(&app, "cannot load the shim", Duration::from_secs(10));
        assert!(said.contains("a Go program: its sockets bypass libc"), "{tag}: {said}");
        let r = env.wait_routed("gosrv.localhost", Duration::from_secs(10));
        assert!(r.body.contains("go pid"), "{tag}: {r:?}");
        let doctor = env.run(&["doctor", "--", exe]);
        assert!(doctor.stdout.contains("is a Go program"), "{tag}: {}", doctor.stdout);
        assert!(doctor.stdout.contains("interception for programs the shim cannot enter: the listener scan"));
    }
}

#[test]
fn two_copies_of_a_go_server_started_by_scripts_run_side_by_side() {
    let Some(b) = built() else { return };
    let env = Env::new("go2");
    let script = format!("exec {}", b.nocgo.display());
    let one = wrap_go(&env, b, "pair", "one", &["sh", "-c", &script]);
    let two = wrap_go(&env, b, "pair", "two", &["sh", "-c", &script]);
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
    let app = wrap_go(&env, b, "gorun", "main", &["go", "run", "server.go"]);
    let said = wait_stderr(&app, "cannot load the shim", Duration::from_secs(10));
    assert!(said.contains("a Go program"), "{said}");
    let r = env.wait_routed("gorun.localhost", Duration::from_secs(25));
    assert!(r.body.contains("go pid"), "{r:?}");
    let doctor = env.run(&["doctor", "--", "go", "run", "server.go"]);
    assert!(doctor.stdout.contains("`go run` builds a Go program"), "{}", doctor.stdout);
}
