//! `agentfs wrap -- CMD`: run CMD as an instance of an app. The wrapper
//! picks the identity, makes sure the router runs, injects the shim, runs CMD
//! as a process tree it owns (`tree`: its own process group, the terminal,
//! signals to the whole group, the rest stopped when CMD ends), announces the
//! URL once the app listens, removes the instance's files afterwards, and
//! exits as CMD did.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result};

use agentfs_registry::binary::Binary;
use agentfs_registry::launch_probe::refuses_shim;
use agentfs_registry::names::{Origin, hostname};
use agentfs_registry::record::{self, VERSION, WrapperRecord};
use agentfs_registry::runfile::wrapper_stem;
use agentfs_registry::{Home, Label, SocketName, env, liveness, reap, scan, trusted};

use crate::args::WrapArgs;
use crate::intercept::Intercept;
use crate::live_record::LiveRecord;
use crate::program;
use crate::signals::Forwarder;
use crate::tee::Tee;
use crate::terminal::Terminal;
use crate::tree::{self, Tree};
use crate::{front, identity, launch, router_ctl, shim, watch};

/// Who this wrapper runs, and where it is reachable.
#[derive(Clone)]
pub struct Instance {
    pub app: Label,
    pub instance: Label,
    pub url: String,
    pub router_port: u16,
    /// How URLs are written: `https://` once the CA is trusted.
    pub origin: Origin,
    pub wrapper_pid: u32,
}

impl Instance {
    /// The URL of `host` through the router.
    pub fn url_of(&self, host: &str) -> String {
        self.origin.url(host)
    }

    /// `agentfs: run `agentfs trust` for https://…`, said once per wrap
    /// while the CA is not trusted.
    pub fn https_hint(&self) -> Option<String> {
        let https = crate::trust::https_url(self.origin, &hostname(&self.app, Some(&self.instance)));
        (!self.origin.https).then(|| format!("agentfs: run `agentfs trust` for {https}"))
    }
}

pub fn run(args: WrapArgs) -> Result<ExitCode> {
    let grace = tree::grace()?;
    let chosen_port = front::chosen_port(args.port.as_deref())?;
    let home = Home::from_env()?;
    home.ensure()?;
    let identity::Here { cwd, app, wanted } = identity::here(args.name.as_deref(), args.instance.as_deref())?;
    let (instance, mut record, record_path) = claim_instance(&home, &app, &wanted, &args, &cwd, (grace, chosen_port))?;
    if instance != wanted {
        eprintln!("agentfs: {app} ({wanted}) is already running; this one is {instance} (use --replica to join it)");
    }
    let mut cleanup = Cleanup {
        home: home.clone(),
        record: record_path.clone(),
        live: None,
        me: std::process::id(),
        app: app.clone(),
        instance: instance.clone(),
    };
    let router_port =
        if args.no_router { router_ctl::configured_port(&home)? } else { router_ctl::ensure_running(&home)? };
    let origin = trusted::origin(&home, router_port);
    let me = Instance {
        url: origin.url(&hostname(&app, Some(&instance))),
        app,
        instance,
        router_port,
        origin,
        wrapper_pid: std::process::id(),
    };

    let program = &args.command[0];
    let resolved = program::resolve(program, std::env::var_os("PATH").as_deref());
    let intercept = Intercept::prepare().ok();
    let refused = refusal(resolved.as_ref());
    let fallback_port = match refused {
        Some(_) if intercept.is_none() => Some(watch::free_loopback_port()?),
        _ => None,
    };
    let mut cmd = command(&args, &home, &me, fallback_port, intercept.is_some())?;
    let tee = match args.log {
        true => Some(tee_to_log(&mut cmd, &home, &me, &record.cmd)?),
        false => None,
    };
    let pty = tee.as_ref().and_then(Tee::pty_fd);
    let terminal = if pty.is_some() { None } else { Terminal::controlling() };
    tree::prepare(&mut cmd, terminal.as_ref(), pty);
    intercept.iter().for_each(|i| i.install(&mut cmd));

    let forwarder = Forwarder::install()?;
    tree::become_subreaper();
    let spawned = cmd.spawn();
    drop(cmd); // the parent's ends of the tee's pipes and pty
    let child = match spawned {
        Ok(c) => c,
        Err(e) => return Ok(spawn_failed(program, &e)),
    };
    let mut tee = tee;
    tee.iter_mut().for_each(|t| t.started(child.id()));
    record.pgid = Some(child.id());
    let cmd_line = record.cmd.clone();
    let live = std::sync::Arc::new(LiveRecord::new(record_path, record));
    cleanup.live = Some(live.clone());
    let tree = Tree::new(child.id(), terminal, grace, home.clone(), live.clone())
        .on_stop(tee.as_ref().and_then(Tee::stop_hook));
    forwarder.to(tree.shared());
    let quiet = refused.is_some().then_some(child.id());
    let converted = intercept.and_then(|i| i.start(home.clone(), me.clone(), args.replica, quiet));
    watch_listeners(&home, me, child.id(), Reach { fallback_port, refused, converted }, live, cmd_line, cwd);
    let code = tree.wait();
    tee.into_iter().for_each(Tee::finish);
    Ok(ExitCode::from(code))
}

/// `wrap --log`: the command's output also goes to the instance's log.
fn tee_to_log(cmd: &mut Command, home: &Home, me: &Instance, cmd_line: &[String]) -> Result<Tee> {
    let (log, _) = crate::applog::open(home, &me.app, &me.instance)?;
    crate::applog::line(&log, format!("agentfs: started {} (agentfs wrap --log)", cmd_line.join(" ")).as_bytes());
    crate::tee::prepare(cmd, &log)
}

/// How the app's listeners reach the router, and what the command is.
struct Reach {
    fallback_port: Option<u16>,
    /// The program the shim cannot enter (shown, why), if the command is one.
    refused: Option<(String, &'static str)>,
    converted: Option<crate::unseen::Converted>,
}

/// The program the shim cannot enter, if the command is one: (shown, why).
fn refusal(resolved: Option<&program::Resolved>) -> Option<(String, &'static str)> {
    let r = resolved?;
    if !(r.kind.refuses_shim() || r.chain.last().is_some_and(|p| p.to_str().is_some_and(refuses_shim))) {
        return None;
    }
    let why = match r.kind {
        Binary::ElfGo { .. } => "a Go program: its sockets bypass libc",
        Binary::ElfStatic => "statically linked",
        _ => "arm64e, or hardened against it",
    };
    Some((r.chain.last().map_or_else(String::new, |p| p.display().to_string()), why))
}

/// The PORT fallback's TCP route; or the banner, with seccomp's conversions
/// and the scan of the tree for listeners the shim cannot see.
fn watch_listeners(
    home: &Home,
    me: Instance,
    pid: u32,
    how: Reach,
    live: std::sync::Arc<LiveRecord>,
    cmd_line: Vec<String>,
    cwd: PathBuf,
) {
    let (shown, why) = how.refused.clone().unwrap_or_default();
    match how.fallback_port {
        Some(port) => {
            eprintln!(
                "agentfs: {shown} cannot load the shim ({why}); it gets PORT={port} and {} routes to 127.0.0.1:{port}",
                me.url
            );
            watch::register_tcp_fallback(home.clone(), me, pid, port, cmd_line, cwd);
        }
        None => {
            if how.refused.is_some() && how.converted.is_some() {
                eprintln!(
                    "agentfs: {shown} cannot load the shim ({why}); its binds are converted by seccomp interception"
                );
            }
            crate::unseen::watch(home.clone(), me.clone(), cwd, how.converted);
            watch::announce_when_listening(home.clone(), me, live);
        }
    }
}

/// Picks the instance id and writes the wrapper record under a lock on the
/// run directory, so two wraps started together never take the same id.
fn claim_instance(
    home: &Home,
    app: &Label,
    wanted: &Label,
    args: &WrapArgs,
    cwd: &Path,
    (grace, port): (Duration, Option<u16>),
) -> Result<(Label, WrapperRecord, PathBuf)> {
    let run = home.run_dir();
    let lock = std::fs::File::open(&run).with_context(|| format!("cannot open {}", run.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", run.display()))?;
    for note in reap::sweep(&run).with_context(|| format!("cannot sweep {}", run.display()))? {
        eprintln!("agentfs: {note}");
    }
    let mut snapshot =
        scan::scan(&home.run_dir()).with_context(|| format!("cannot read {}", home.run_dir().display()))?;
    if let Some(supervisor) = std::env::var(env::SUPERVISOR_PID).ok().and_then(|p| p.parse::<u32>().ok()) {
        snapshot.wrappers.retain(|w| w.wrapper_pid != supervisor);
    }
    let instance = if args.replica { wanted.clone() } else { identity::unique_instance(app, wanted, &snapshot) };
    let record = WrapperRecord {
        v: VERSION,
        app: app.clone(),
        instance: instance.clone(),
        wrapper_pid: std::process::id(),
        cmd: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        cwd: cwd.to_owned(),
        started_at_ms: liveness::now_ms(),
        pgid: None,
        stop_timeout_secs: Some(grace.as_secs()),
        exits: Vec::new(),
        port,
        front_port: None,
    };
    let path = home.run_dir().join(format!("{}.json", wrapper_stem(app, &instance, record.wrapper_pid)));
    record::write(&path, &record).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((instance, record, path))
}

/// The child's command line and environment.
fn command(
    args: &WrapArgs,
    home: &Home,
    me: &Instance,
    fallback_port: Option<u16>,
    intercepted: bool,
) -> Result<Command> {
    let host = hostname(&me.app, Some(&me.instance));
    let own_socket = scan::socket_path(
        &home.run_dir(),
        &SocketName::new(me.app.clone(), me.instance.clone(), 80).stem_in(&home.run_dir()),
    );
    let mut vars: Vec<(OsString, OsString)> = vec![
        (env::HOME.into(), home.root().into()),
        (env::APP.into(), me.app.as_str().into()),
        (env::INSTANCE.into(), me.instance.as_str().into()),
        (env::HOSTNAME.into(), host.into()),
        (env::URL.into(), me.url.clone().into()),
        (env::SOCKET.into(), own_socket.into()),
        (env::WRAPPER_PID.into(), me.wrapper_pid.to_string().into()),
    ];
    if let Some(ca) = node_extra_ca_certs(home) {
        vars.push((NODE_EXTRA_CA_CERTS.into(), ca.into()));
    }
    if args.debug {
        vars.push((env::DEBUG.into(), "stderr".into()));
    }
    if args.replica {
        vars.push((env::REPLICA.into(), "1".into()));
    }
    if let Some(port) = fallback_port {
        vars.push(("PORT".into(), port.to_string().into()));
    } else {
        let shim = shim::path(home)?;
        let preload = shim::preload_value(&shim, std::env::var_os(shim::PRELOAD_VAR).as_deref());
        vars.push((env::SHIM.into(), shim.into()));
        vars.push((shim::PRELOAD_VAR.into(), preload));
        // PORT for a program of the tree the shim cannot enter (the exec hooks give it),
        // unless seccomp interception converts its listeners.
        if !intercepted {
            vars.push((env::STATIC_PORT.into(), watch::free_loopback_port()?.to_string().into()));
        }
    }
    let mut cmd = launch::command(&args.command, vars, args.debug);
    cmd.env_remove(env::SUPERVISOR_PID);
    Ok(cmd)
}

/// Node's variable for extra roots (one file; it cannot be a list).
pub const NODE_EXTRA_CA_CERTS: &str = "NODE_EXTRA_CA_CERTS";

/// The CA for `NODE_EXTRA_CA_CERTS`, made if absent (the router makes it
/// too), unless the user set the variable: theirs is left alone (see doctor).
fn node_extra_ca_certs(home: &Home) -> Option<PathBuf> {
    if std::env::var_os(NODE_EXTRA_CA_CERTS).is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let pem = agentfs_registry::ca::root_pem(home);
    if !pem.exists() {
        agentfs_registry::ca::Authority::load_or_create(home).ok()?;
    }
    pem.exists().then_some(pem)
}

fn spawn_failed(program: &OsString, e: &std::io::Error) -> ExitCode {
    let shown = Path::new(program).display();
    let (code, fix) = match e.kind() {
        std::io::ErrorKind::NotFound => (127, "check the spelling or your PATH"),
        std::io::ErrorKind::PermissionDenied => (126, "make it executable (chmod +x)"),
        _ => (126, "check that it is a program this system can run"),
    };
    eprintln!("agentfs: cannot run {shown}: {e}; {fix}");
    ExitCode::from(code)
}

/// Removes the wrapper record and the files of this instance's listeners
/// whose processes are gone, however the wrapper returns.
struct Cleanup {
    home: Home,
    record: PathBuf,
    /// Once the command runs: the record other threads may still rewrite.
    live: Option<std::sync::Arc<LiveRecord>>,
    me: u32,
    app: Label,
    instance: Label,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match &self.live {
            Some(live) => live.remove(),
            None => {
                let _ = std::fs::remove_file(&self.record);
            }
        }
        let Ok(snap) = scan::scan_instance(&self.home.run_dir(), &self.app, &self.instance) else { return };
        for l in &snap.listeners {
            let ours = l.sidecar.as_ref().is_some_and(|s| s.wrapper_pid == Some(self.me));
            if ours && !l.maybe_alive() {
                let _ = scan::remove_listener_files(&self.home.run_dir(), l);
            }
        }
        for (stem, sc) in &snap.orphans {
            if sc.wrapper_pid == Some(self.me) && !liveness::pid_alive(sc.pid) {
                let _ = std::fs::remove_file(scan::sidecar_path(&self.home.run_dir(), stem));
            }
        }
    }
}
