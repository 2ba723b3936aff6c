//! `agentfs doctor [-- CMD]`: one ✓/✗ line per check, each ✗ with its fix.
//! Checks the shim, the home directory, the router, name resolution,
//! sun_path headroom and HTTPS trust (`agentfs trust`, NODE_EXTRA_CA_CERTS);
//! with a command, whether the shim can enter it.

use std::ffi::OsString;
use std::net::ToSocketAddrs;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Result;

use agentfs_registry::env::{self, PortSet};
use agentfs_registry::sunpath::SUN_PATH_LEN;
use agentfs_registry::{Home, HomeError};

use agentfs_registry::binary::Binary;

use crate::program;
use crate::{router_ctl, shim};

/// The result of one check.
pub struct Finding {
    pub ok: bool,
    pub what: String,
    /// How to fix it (for a failed check) or what agentfs will do.
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding { ok: true, what: what.into(), fix: None }
}

fn bad(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { ok: false, what: what.into(), fix: Some(fix.into()) }
}

pub fn run(command: &[OsString], json: bool) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let mut findings = vec![check_home(&home), check_shim(&home), check_router(&home), check_resolution()];
    findings.push(check_sun_path(&home));
    if cfg!(target_os = "linux") {
        findings.push(ok(crate::intercept::describe()));
    }
    findings.extend(check_env());
    findings.extend(check_https(&home));
    if !command.is_empty() {
        findings.extend(check_command(&home, command));
    }
    let all_ok = findings.iter().all(|f| f.ok);
    if json {
        let checks: Vec<_> =
            findings.iter().map(|f| serde_json::json!({"ok": f.ok, "what": f.what, "fix": f.fix})).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"v": 1, "ok": all_ok, "checks": checks}))?);
        return Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    for f in &findings {
        println!("{} {}", if f.ok { "✓" } else { "✗" }, f.what);
        if let Some(fix) = &f.fix {
            println!("  → {fix}");
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check_home(home: &Home) -> Finding {
    match home.check() {
        Ok(()) => ok(format!("home {} is private to you", home.root().display())),
        Err(HomeError::Stat { .. }) => ok(format!("home {} will be created on first use", home.root().display())),
        Err(e) => {
            bad(format!("home {}: {e}", home.root().display()), "apply the fix above, or set AGENTFS_HOME elsewhere")
        }
    }
}

fn check_shim(home: &Home) -> Finding {
    let path = match shim::path(home) {
        Ok(p) => p,
        Err(e) => return bad(format!("shim: {e:#}"), "check that AGENTFS_HOME is writable"),
    };
    let out = Command::new("/bin/sh").args(["-c", ":"]).env(shim::PRELOAD_VAR, &path).stdin(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() && o.stderr.is_empty() => ok(format!("shim {} loads", path.display())),
        Ok(o) => bad(
            format!("shim {} does not load: {}", path.display(), String::from_utf8_lossy(&o.stderr).trim()),
            "unset AGENTFS_SHIM, or rebuild agentfs for this machine",
        ),
        Err(e) => bad(format!("cannot run /bin/sh to test the shim: {e}"), "check the system's /bin/sh"),
    }
}

fn check_router(home: &Home) -> Finding {
    match router_ctl::running(home) {
        Ok(Some(s)) => {
            let how = match s.sockets.as_str() {
                "bound" => "started by agentfs".to_owned(),
                by => format!("on sockets passed by {by}"),
            };
            ok(format!("router running: {} (pid {}, {how})", s.url, s.pid))
        }
        Ok(None) => match (crate::installed::find(home), router_ctl::configured_port(home)) {
            (Some(i), _) => ok(format!(
                "router not running; installed ({}): {} starts it at the first request",
                i.path.display(),
                i.manager.name()
            )),
            (None, Ok(port)) => ok(format!("router not running; `agentfs wrap` starts it on port {port}")),
            (None, Err(e)) => bad(format!("router configuration: {e:#}"), "fix AGENTFS_HTTP_PORT"),
        },
        Err(e) => bad(format!("router: {e:#}"), "run `agentfs router stop` and start it again"),
    }
}

fn check_resolution() -> Finding {
    let name = "agentfs-doctor.localhost:80";
    let loopback = name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()).unwrap_or_default();
    if !loopback.is_empty() && loopback.iter().all(|a| a.ip().is_loopback()) {
        return ok("*.localhost resolves to loopback for every program");
    }
    bad(
        "*.localhost does not resolve for non-browser programs (browsers and curl ≥ 7.85 resolve it themselves)",
        "`sudo -E agentfs hosts sync` writes exact lines for every routed host into a marked block of /etc/hosts \
         (again after new instances; `agentfs hosts clean` removes it), or send the Host header to 127.0.0.1 yourself",
    )
}

fn check_sun_path(home: &Home) -> Finding {
    let run = home.run_dir();
    let room = (SUN_PATH_LEN - 1).saturating_sub(run.as_os_str().len() + 1);
    if room >= 40 {
        return ok(format!("socket names have {room} bytes of sun_path room in {}", run.display()));
    }
    let fix = "shorter socket paths: set AGENTFS_HOME to a short directory such as ~/.agentfs";
    if room >= 24 || cfg!(target_os = "linux") {
        return Finding {
            ok: true,
            what: format!("only {room} bytes of sun_path room: long names use short hashed socket names"),
            fix: Some(fix.into()),
        };
    }
    bad(format!("{} leaves no room in sun_path ({SUN_PATH_LEN} bytes)", run.display()), fix)
}

fn check_env() -> Vec<Finding> {
    let mut v = Vec::new();
    for var in [env::PORTS, env::SKIP_PORTS] {
        if let Ok(value) = std::env::var(var) {
            if let Err(e) = PortSet::parse(&value) {
                v.push(bad(format!("{var}: {e}"), format!("fix or unset {var}")));
            }
        }
    }
    v
}

/// Whether the CA is trusted (so URLs are https), and whether wrapped Node
/// apps will trust it: a NODE_EXTRA_CA_CERTS of the user's own is kept.
fn check_https(home: &Home) -> Vec<Finding> {
    let pem = agentfs_registry::ca::root_pem(home);
    let mut v = vec![if agentfs_registry::trusted::is_trusted(home) {
        ok(format!("the agentfs CA {} is trusted: URLs are https:// (see `agentfs trust --status`)", pem.display()))
    } else {
        Finding {
            ok: true,
            what: "the agentfs CA is not trusted yet: URLs are http:// (https:// works with curl --cacert)".into(),
            fix: Some("agentfs trust".into()),
        }
    }];
    let var = crate::wrap::NODE_EXTRA_CA_CERTS;
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(theirs) if std::path::Path::new(&theirs) != pem => v.push(Finding {
            ok: true,
            what: format!(
                "{var} is yours ({}): wrapped apps keep it, so Node does not trust the agentfs CA {}",
                std::path::Path::new(&theirs).display(),
                pem.display()
            ),
            fix: Some(format!("to trust both, point {var} at one file holding both certificates")),
        }),
        _ => v.push(ok(format!("wrapped apps get {var}={} (Node trusts the agentfs CA)", pem.display()))),
    }
    v
}

fn check_command(home: &Home, command: &[OsString]) -> Vec<Finding> {
    let program = &command[0];
    let shown = program.to_string_lossy();
    let Some(r) = program::resolve(program, std::env::var_os("PATH").as_deref()) else {
        return vec![bad(format!("{shown}: not found"), "check the spelling or your PATH")];
    };
    let chain: Vec<String> = r.chain.iter().map(|p| p.display().to_string()).collect();
    let mut v = vec![ok(format!("{shown} runs as {}", chain.join(" → ")))];
    let last = chain.last().map_or("", String::as_str);
    let seccomp = crate::intercept::Intercept::prepare().is_ok();
    let fallback = if seccomp {
        "agentfs wrap converts its TCP binds with seccomp interception: it keeps its port, two copies run side by side"
    } else {
        "agentfs wrap sets PORT to a free port and routes the instance there; the app must listen on $PORT"
    };
    v.push(match r.kind {
        Binary::ElfStatic => Finding {
            ok: true,
            what: format!("{last} is statically linked: the shim cannot enter it"),
            fix: Some(fallback.into()),
        },
        Binary::ElfGo { dynamic } => Finding {
            ok: true,
            what: format!(
                "{last} is a Go program{}: its sockets bypass libc, so the shim cannot enter it",
                if dynamic { " (cgo, dynamically linked)" } else { " (statically linked)" }
            ),
            fix: Some(fallback.into()),
        },
        k @ Binary::MachO { .. } if k.refuses_shim() => Finding {
            ok: true,
            what: format!("{last} runs as arm64e here: dyld would kill it with the (arm64) shim"),
            fix: Some(fallback.into()),
        },
        Binary::ElfDynamic => ok("dynamically linked: the shim loads into it"),
        Binary::MachO { .. } => ok("a Mach-O executable the shim can load into (unless it is restricted)"),
        Binary::Script | Binary::Other => ok("not an executable format this check reads; the shim is expected to load"),
    });
    if matches!(r.kind, Binary::ElfGo { .. }) && command.get(1).is_some_and(|a| a == "run") {
        let same = if seccomp { "its binds are intercepted the same way" } else { "it gets the same PORT" };
        v.push(ok(format!("`go run` builds a Go program and runs it: the shim cannot enter that either ({same})")));
    }
    if r.chain.len() > 1 || r.kind == Binary::Script {
        let fix = if seccomp {
            "agentfs wrap converts its TCP binds with seccomp interception"
        } else {
            "agentfs wrap gives it PORT and routes a TCP listener of the tree over TCP"
        };
        v.extend(crate::doctor_script::named_programs(&r.chain[0], fix));
    }
    v.extend(check_launch_plan(home, command));
    #[cfg(target_vendor = "apple")]
    if let Ok(shim) = shim::path(home) {
        v.extend(crate::doctor_macos::check(&r.chain, &shim));
    }
    v
}

/// What `agentfs wrap` will do to keep the shim across protected programs
/// (macOS, or `AGENTFS_SIMULATE_SIP`).
fn check_launch_plan(home: &Home, command: &[OsString]) -> Vec<Finding> {
    use agentfs_registry::launch::{self, Launch, Rules};
    use agentfs_registry::launch_probe::RealProbe;
    let probe = RealProbe::from_env();
    if !cfg!(target_vendor = "apple") && probe.simulate_sip.is_none() {
        return Vec::new();
    }
    let Ok(shim_path) = shim::path(home) else { return Vec::new() };
    let Some(argv) = command.iter().map(|a| a.to_str().map(str::to_owned)).collect::<Option<Vec<_>>>() else {
        return Vec::new();
    };
    let mut env: Vec<String> =
        std::env::vars().collect::<Vec<_>>().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("{}={}", env::SHIM, shim_path.display()));
    env.push(format!("{}={}", shim::PRELOAD_VAR, shim_path.display()));
    let l = Launch { file: argv[0].clone(), search: true, path_var: std::env::var("PATH").ok(), argv, env };
    let plan = launch::resolve(&l, &Rules::host(), &probe);
    plan.notes
        .into_iter()
        .map(|n| Finding {
            ok: !n.contains("is lost"),
            what: format!("launch: {n}"),
            fix: Some("agentfs wrap does this by itself".into()),
        })
        .collect()
}
