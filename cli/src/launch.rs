//! Starting the wrapped command so that it keeps the shim: on macOS (or with
//! `AGENTFS_SIMULATE_SIP` on Linux) `npm` is `#!/usr/bin/env node` and
//! `/usr/bin/env` is SIP-protected, so the wrapper plans its own launch with
//! the same resolver the shim's exec hooks use.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use agentfs_registry::launch::{self, Launch, Rules};
use agentfs_registry::launch_probe::RealProbe;

/// `argv` with `vars` added to this process's environment, planned.
pub fn command(argv: &[OsString], vars: Vec<(OsString, OsString)>, debug: bool) -> Command {
    let probe = RealProbe::from_env();
    let planning = cfg!(target_vendor = "apple") || probe.simulate_sip.is_some();
    if planning {
        if let Some(cmd) = planned(argv, &vars, &probe, debug) {
            return cmd;
        }
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).envs(vars);
    cmd
}

fn planned(argv: &[OsString], vars: &[(OsString, OsString)], probe: &RealProbe, debug: bool) -> Option<Command> {
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !vars.iter().any(|(v, _)| v == k)).collect();
    env.extend(vars.iter().cloned());
    let text = |s: &OsString| s.to_str().map(str::to_owned);
    let launch = Launch {
        file: text(&argv[0])?,
        search: true,
        path_var: std::env::var("PATH").ok(),
        argv: argv.iter().map(text).collect::<Option<_>>()?,
        env: env.iter().map(|(k, v)| Some(format!("{}={}", text(k)?, text(v)?))).collect::<Option<_>>()?,
    };
    let plan = launch::resolve(&launch, &Rules::host(), probe);
    if debug {
        for note in &plan.notes {
            eprintln!("agentfs: launch: {note}");
        }
    }
    if !plan.changed {
        return None;
    }
    let mut cmd = Command::new(&plan.path);
    cmd.arg0(&plan.argv[0]).args(&plan.argv[1..]).env_clear();
    cmd.envs(plan.env.iter().filter_map(|e| e.split_once('=')));
    Some(cmd)
}
