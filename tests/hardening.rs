//! The hardening review's cases, end to end with the real binary: a burst
//! of new connections to a backlog-5 Python server is served whole; a router
//! out of file descriptors stays quiet, keeps answering `agentfs ps` and
//! recovers; FIFOs under the names agentfs reads hang no command and no
//! bind; concurrent `agentfs route` lose nothing; bad targets and odd homes
//! get one clear line.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use agentfs_registry::routes::StaticRoutes;
use support::*;

const START: Duration = Duration::from_secs(30);

fn mkfifo(path: &std::path::Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
}

#[test]
fn a_burst_of_new_connections_to_a_backlog_5_server_is_served_whole() {
    let env = Env::new("burst");
    let dir = TempDir::new("burst");
    let app = wrap_in(&env, dir.path(), &["--name", "py", "--instance", "main", "--", "python3", "-m", "http.server"]);
    wait_stderr(&app, "agentfs: py (main) →", START);
    env.wait_routed("py.localhost", START);
    let go = Arc::new(Barrier::new(100));
    let port = env.port;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                get_tcp(port, "py.localhost", "/", &[]).map_or(0, |r| r.status)
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 100, "{statuses:?}");
}

/// The unit of `/proc/<pid>/stat`'s CPU times on every Linux.
const USER_HZ: f64 = 100.0;

/// Clock ticks of CPU time `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_router_stays_quiet_keeps_answering_and_recovers() {
    let env = Env::new("fds");
    let log = env.home.path().join("logs/router.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut cmd = Command::new("sh");
    clean_env(&mut cmd);
    cmd.arg("-c")
        .arg(format!("ulimit -n 256 && exec {} router run --log-file {}", agentfs(), log.display()))
        .env("AGENTFS_HOME", env.home.path())
        .env("AGENTFS_HTTP_PORT", env.port.to_string());
    let router = Proc::spawn(cmd);
    wait_for("the router to answer", START, || (env.run(&["router", "status"]).code == Some(0)).then_some(()));

    let held: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(("127.0.0.1", env.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300)); // let the router take what it will
    let (log_before, cpu_before, t0) =
        (std::fs::metadata(&log).unwrap().len(), cpu_ticks(router.pid()), Instant::now());
    let started = Instant::now();
    let ps = env.run(&["ps"]);
    assert_eq!(ps.code, Some(0), "{ps:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "agentfs ps took {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    let ticks = cpu_ticks(router.pid()) - cpu_before;
    let share = ticks as f64 / USER_HZ / t0.elapsed().as_secs_f64();
    assert!(share < 0.5, "the router used {:.0}% of a core while out of descriptors", share * 100.0);
    let grown = std::fs::metadata(&log).unwrap().len() - log_before;
    assert!(grown < 1024 * 1024, "router.log grew {grown} bytes");

    drop(held);
    let ended = Instant::now();
    let answer = wait_for("the router to serve again", Duration::from_secs(1), || {
        get_tcp(env.port, "localhost", "/", &[]).ok().filter(|r| r.status == 200)
    });
    assert!(answer.body.contains("agentfs"), "the dashboard, {:?} after the load ended", ended.elapsed());
    let r = env.run(&["router", "stop"]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn fifos_under_the_names_agentfs_reads_hang_nothing() {
    let env = Env::new("fifos");
    let r = env.run(&["router", "start"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let run = env.home.run();
    for name in ["shop.main.3000.json", "shop.main.wrapper-1.json", ".shop.main.3000.claim"] {
        mkfifo(&run.join(name));
    }
    mkfifo(&env.home.path().join("routes.json"));
    let within_2s = |args: &[&str]| {
        let started = Instant::now();
        let r = env.run(args);
        assert!(started.elapsed() < Duration::from_secs(2), "agentfs {args:?} took {:?}", started.elapsed());
        r
    };
    let ps = within_2s(&["ps", "--json"]);
    assert_eq!((ps.code, ps.stdout.trim()), (Some(0), "[]"), "{ps:?}");
    let route = within_2s(&["route", "x.localhost", "3999"]);
    assert_eq!(route.code, Some(0), "{route:?}");
    assert_eq!(StaticRoutes::load(&env.home.path().join("routes.json")).unwrap().routes.len(), 1);

    let dir = TempDir::new("fifoapp");
    let started = Instant::now();
    let app = wrap_in(
        &env,
        dir.path(),
        &["--name", "shop", "--instance", "main", "--", "python3", "-m", "http.server", "3000"],
    );
    wait_stderr(&app, "agentfs: shop (main) →", Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(2), "wrap took {:?}", started.elapsed());
    assert_eq!(env.wait_routed("main.shop.localhost", Duration::from_secs(2)).status, 200);
}

#[test]
fn twenty_concurrent_routes_all_land_with_the_router_down_and_up() {
    let env = Env::new("routes");
    for (round, up) in [(0, false), (1, true)] {
        if up {
            assert_eq!(env.run(&["router", "start"]).code, Some(0));
        }
        let procs: Vec<Proc> = (0..20)
            .map(|i| Proc::spawn(env.agentfs(&["route", &format!("r{round}-{i}.localhost"), &(4000 + i).to_string()])))
            .collect();
        for mut p in procs {
            let status = p.wait(Duration::from_secs(30));
            assert!(status.success(), "{}", p.output());
        }
        let routes = StaticRoutes::load(&env.home.path().join("routes.json")).unwrap();
        assert_eq!(routes.routes.len(), 20 * (round + 1), "router up: {up}; {:?}", routes.routes.keys());
    }
}

#[test]
fn bad_targets_and_odd_homes_get_one_clear_line() {
    let env = Env::new("targets");
    let router_sock = env.home.path().join("router.sock").display().to_string();
    for (target, says) in [
        ("/etc/passwd", "not a Unix socket"),
        ("169.254.169.254:80", "link-local"),
        ("10.1.2.3:80", "--allow-remote"),
        (router_sock.as_str(), "inside the agentfs home"),
    ] {
        let r = env.run(&["route", "x.localhost", target]);
        assert_eq!(r.code, Some(1), "{target}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{target}: {r:?}");
        assert!(r.stderr.contains(says), "{target}: {r:?}");
    }
    assert_eq!(env.run(&["route", "--allow-remote", "lan.localhost", "10.1.2.3:80"]).code, Some(0));

    let dir = TempDir::new("homes");
    let long = dir.path().join("missing").join("x".repeat(120)).join("h");
    let mut ps = Command::new(agentfs());
    clean_env(&mut ps);
    let out = ps.arg("ps").env("AGENTFS_HOME", &long).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing runs"));

    let nested = dir.path().join("a/b/h");
    let mut route = Command::new(agentfs());
    clean_env(&mut route);
    let out = route.args(["route", "api.localhost", "3000"]).env("AGENTFS_HOME", &nested).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(nested.join("routes.json").exists(), "the home was made with its parents");
}
