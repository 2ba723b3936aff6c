//! `agentfs route HOST TARGET` / `agentfs unroute HOST`: static routes.
//! Through the router's API when it runs, else straight into routes.json
//! (which the router reads when it starts).

use std::process::ExitCode;

use anyhow::{Result, bail};

use agentfs_registry::names::url;
use agentfs_registry::routes::{StaticRoutes, normalize_host};
use agentfs_registry::{Home, Target};
use agentfs_router::client::{self, ClientError};

use crate::router_ctl;

pub fn route(host: &str, target: &str) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let host = normalize_host(host).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
    let parsed: Target = target.parse()?;
    if let Target::Unix(p) = &parsed {
        if !p.exists() {
            eprintln!(
                "agentfs: note: {} does not exist yet; requests get 502 until something listens there",
                p.display()
            );
        }
    }
    match client::put_static(&home, &host, &parsed.to_string()) {
        Ok(_) => {}
        Err(ClientError::NotRunning(_)) => {
            home.ensure()?;
            let mut routes = StaticRoutes::load(&home.routes_file())?;
            routes.routes.insert(host.clone(), parsed.clone());
            routes.save(&home.routes_file())?;
        }
        Err(e) => return Err(e.into()),
    }
    let port = router_ctl::configured_port(&home)?;
    eprintln!("agentfs: {} → {parsed}", url(&host, port));
    Ok(ExitCode::SUCCESS)
}

pub fn unroute(host: &str) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let host = normalize_host(host).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
    let mut routes = StaticRoutes::load(&home.routes_file())?;
    if !routes.routes.contains_key(&host) {
        bail!("there is no static route for {host}; `agentfs ps` and the dashboard list what is routed");
    }
    match client::delete_static(&home, &host) {
        Ok(()) => {}
        Err(ClientError::NotRunning(_)) => {
            routes.routes.remove(&host);
            routes.save(&home.routes_file())?;
        }
        Err(e) => return Err(e.into()),
    }
    eprintln!("agentfs: removed the route for {host}");
    Ok(ExitCode::SUCCESS)
}
