//! `agentfs hosts sync|clean|status`: the routed `*.localhost` hosts in a
//! marked block of `/etc/hosts` (`AGENTFS_HOSTS_FILE`), for programs that do
//! not resolve them by themselves (see `agentfs_registry::hosts`, which
//! changes only that block, atomically). The hosts are what `ps` lists (each
//! instance's hosts, its app's for the default one) and the static routes.

use std::process::ExitCode;

use anyhow::{Context, Result};

use agentfs_registry::hosts;
use agentfs_registry::names::host_of_url;
use agentfs_registry::routes::StaticRoutes;
use agentfs_registry::{Home, env};

use crate::args::HostsCommand;
use crate::ps;

pub fn run(cmd: HostsCommand) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let file = hosts::path();
    match cmd {
        HostsCommand::Sync => {
            let names = routed(&home)?;
            if names.is_empty()
                && std::env::var_os("SUDO_USER").is_some()
                && std::env::var_os(env::HOME).is_none_or(|v| v.is_empty())
            {
                anyhow::bail!(
                    "nothing is routed in {} (sudo's home, not yours): keep your environment with `sudo -E`, \
                     or set AGENTFS_HOME=/path/to/your/.agentfs",
                    home.root().display()
                );
            }
            let changed = hosts::update(&file, Some(&hosts::block(&names)))?;
            let what = if changed { "now lists" } else { "already lists" };
            eprintln!("agentfs: {} {what} {} host(s), on 127.0.0.1 and ::1", file.display(), names.len());
        }
        HostsCommand::Clean => match hosts::update(&file, None)? {
            true => eprintln!("agentfs: removed the agentfs block from {}", file.display()),
            false => eprintln!("agentfs: {} has no agentfs block", file.display()),
        },
        HostsCommand::Status { json } => return status(&home, &file, json),
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when the block lists exactly the routed hosts, 1 otherwise.
fn status(home: &Home, file: &std::path::Path, json: bool) -> Result<ExitCode> {
    let routed = routed(home)?;
    let listed = hosts::listed(file)?;
    let in_sync = listed.as_ref().is_some_and(|l| *l == routed) || (listed.is_none() && routed.is_empty());
    if json {
        let v = serde_json::json!({"v": 1, "file": file, "in_sync": in_sync, "listed": listed, "routed": routed});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &listed {
            None => println!("{}: no agentfs block", file.display()),
            Some(l) => println!("{}: the agentfs block lists {} host(s)", file.display(), l.len()),
        }
        let list = listed.unwrap_or_default();
        for h in routed.iter().filter(|h| !list.contains(h)) {
            println!("  missing: {h}");
        }
        for h in list.iter().filter(|h| !routed.contains(h)) {
            println!("  stale:   {h}");
        }
        if !in_sync {
            println!("run `agentfs hosts sync` (with sudo for /etc/hosts) to bring it in line");
        }
    }
    Ok(if in_sync { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Every host the router answers for an app or a static route, sorted.
pub fn routed(home: &Home) -> Result<Vec<String>> {
    let (rows, _) = ps::collect(home)?;
    let mut names: Vec<String> = rows.iter().filter_map(|r| host_of_url(&r.url).map(str::to_owned)).collect();
    names.extend(rows.iter().filter(|r| r.default).map(|r| format!("{}.localhost", r.app)));
    let statics = StaticRoutes::load(&home.routes_file())
        .with_context(|| format!("cannot read {}", home.routes_file().display()))?;
    names.extend(statics.routes.into_keys());
    names.sort_unstable();
    names.dedup();
    Ok(names)
}
