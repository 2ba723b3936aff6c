//! Socket activation: `agentfs router run` under `systemd-socket-activate`
//! (Debian's systemd package) with `-l 127.0.0.1:<p> -l [::1]:<p>` serves
//! through the sockets it is passed, says so in `router status`, drains and
//! exits 0 on SIGTERM, and run again on the same sockets serves every route
//! it had (instances from run/, static routes from routes.json).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn the_router_serves_on_the_sockets_systemd_passes_and_keeps_its_routes_across_a_restart() {
    let env = Env::new("activate");
    let dir = TempDir::new("activate");
    let args = ["--no-router", "--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"];
    let _app = wrap_in(&env, dir.path(), &args);
    wait_for("the app's socket", Duration::from_secs(20), || env.home.sock("shop.main.8000").exists().then_some(()));
    let p = env.port;
    for round in 0..2 {
        let mut c = Command::new("systemd-socket-activate");
        clean_env(&mut c);
        c.args(["-l", &format!("127.0.0.1:{p}"), "-l", &format!("[::1]:{p}")])
            .arg("-E")
            .arg(format!("AGENTFS_HOME={}", env.home.path().display()))
            .arg("-E")
            .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
            .arg(agentfs())
            .args(["router", "run"]);
        let mut router = Proc::spawn(c);
        // The first connection starts the router, which takes it from the passed socket.
        let r = wait_for("the instance through the passed sockets", Duration::from_secs(20), || {
            get_tcp(p, "main.shop.localhost", "/", &[]).ok().filter(|r| r.status == 200)
        });
        assert!(r.body.contains("Directory listing"), "{r:?}");
        if round == 0 {
            assert_eq!(env.run(&["route", "api.localhost", "9"]).code, Some(0));
        }
        let status: Value = serde_json::from_str(&env.run(&["router", "status", "--json"]).stdout).unwrap();
        assert_eq!(status["sockets"], "systemd", "{status}");
        let listening = serde_json::json!([format!("127.0.0.1:{p}"), format!("[::1]:{p}")]);
        assert_eq!(
            (&status["listening"], &status["static_routes"]),
            (&listening, &1.into()),
            "round {round}: {status}"
        );
        assert!(env.run(&["router", "status"]).stdout.contains("sockets passed by systemd"));
        let doctor = env.run(&["doctor"]).stdout;
        assert!(doctor.contains("on sockets passed by systemd)"), "doctor says how the router runs: {doctor}");
        router.signal(libc::SIGTERM);
        let exit = router.wait(Duration::from_secs(20));
        assert!(exit.success(), "SIGTERM drains and exits 0: {exit:?}\n{}", router.output());
    }
}

/// The router `agentfs install` installed, as systemd holds its sockets
/// (a stand-in `systemctl --user` that runs the written units with
/// systemd-socket-activate, since systemd is not PID 1 here).
struct FakeSystemd {
    dir: TempDir,
    vars: Vec<(String, String)>,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = TempDir::new("fake-systemd");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(fixture("fake-systemctl"), bin.join("systemctl")).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let vars = vec![
            ("HOME".to_owned(), dir.path().join("user").display().to_string()),
            ("PATH".to_owned(), path),
            ("FAKE_SYSTEMD".to_owned(), dir.path().display().to_string()),
        ];
        FakeSystemd { dir, vars }
    }

    fn vars(&self) -> Vec<(&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The systemctl calls so far, one per line.
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }

    /// The process systemd runs for the router (systemd-socket-activate, then the router it becomes).
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("pid")).ok()?.trim().parse().ok()
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        let ours = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|w| w == b"router" || w.ends_with(b"systemd-socket-activate")))
        };
        if let Some(pid) = self.pid().filter(|p| ours(*p)) {
            // SAFETY: kill(2) on the process this test's stand-in systemd started (checked to still be it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn an_installed_router_is_started_and_stopped_through_its_manager_never_beside_it() {
    let env = Env::new("installed");
    let systemd = FakeSystemd::new();
    let vars = systemd.vars();
    let p = env.port.to_string();
    let install = env.run_with(&["install", "--ports", &p], &vars);
    assert_eq!(install.code, Some(0), "{install:?}");
    assert!(systemd.calls().contains("--user enable --now agentfs-router.socket"), "{}", systemd.calls());
    assert!(env.run_with(&["doctor"], &vars).stdout.contains("systemd (user units) starts it at the first request"));

    // wrap finds no router: it asks systemd to start the installed one instead of starting its own.
    let dir = TempDir::new("installed-app");
    let args = ["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "8000"];
    let app = wrap_in_with(&env, dir.path(), &args, &vars);
    let banner = wait_stderr(&app, "main.shop.localhost", Duration::from_secs(20));
    assert!(banner.contains(&format!("http://main.shop.localhost:{p}")), "{banner}");
    assert!(systemd.calls().contains("--user start agentfs-router.socket agentfs-router.service"));
    let status: Value = serde_json::from_str(&env.run(&["router", "status", "--json"]).stdout).unwrap();
    assert_eq!(status["sockets"], "systemd", "the installed router serves, on systemd's sockets: {status}");
    assert_eq!(status["pid"].as_u64().map(|p| p as u32), systemd.pid(), "{status}");
    env.wait_routed("main.shop.localhost", Duration::from_secs(20));

    // stop stops the sockets too: no request starts it again until `router start`.
    let stop = env.run_with(&["router", "stop"], &vars);
    assert!(stop.code == Some(0) && stop.stderr.contains("router stopped (systemd (user units)"), "{stop:?}");
    assert!(systemd.calls().contains("--user stop agentfs-router.socket agentfs-router.service"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", env.port)).is_err(), "the sockets are closed");
    assert_eq!(env.run(&["router", "status"]).code, Some(3));
    // Flags the installation fixes are refused, in one line.
    let flags = env.run_with(&["router", "start", "--port", "1"], &vars);
    assert!(flags.code == Some(1) && flags.stderr.contains("agentfs uninstall` first"), "{flags:?}");
    let start = env.run_with(&["router", "start"], &vars);
    assert_eq!(start.code, Some(0), "{start:?}");
    env.wait_routed("main.shop.localhost", Duration::from_secs(20));
    let status: Value = serde_json::from_str(&env.run(&["router", "status", "--json"]).stdout).unwrap();
    assert_eq!(status["sockets"], "systemd", "{status}");

    // A unit installed for another home is not this home's router.
    let elsewhere = Env::new("installed-other");
    assert!(!elsewhere.run_with(&["doctor"], &vars).stdout.contains("installed ("));

    let uninstall = env.run_with(&["uninstall", "--ports", &p], &vars);
    assert_eq!(uninstall.code, Some(0), "{uninstall:?}");
    assert!(!systemd.dir.path().join("user/.config/systemd/user/agentfs-router.socket").exists());
    drop(app);
}
