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
