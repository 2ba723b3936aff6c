//! `agentfs route HOST TARGET` / `agentfs unroute HOST`: static routes.
//! Through the router's API when it runs, else straight into routes.json
//! (which the router reads when it starts), under the same lock the router
//! takes, so concurrent edits never lose a route. Targets are checked by
//! `agentfs_registry::static_target` here and again by the router.

use std::process::ExitCode;

use anyhow::Result;

use agentfs_registry::routes::{StaticRoutes, normalize_host};
use agentfs_registry::{Home, Target, static_target, trusted};
use agentfs_router::client::{self, ClientError};

use crate::router_ctl;

pub fn route(host: &str, target: &str, allow_remote: bool, json: bool) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let host = normalize_host(host).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
    let parsed: Target = target.parse()?;
    static_target::check_new(&home, &parsed, allow_remote).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
    if let Target::Unix(p) = &parsed {
        if !p.exists() {
            eprintln!(
                "agentfs: note: {} does not exist yet; requests get 502 until something listens there",
                p.display()
            );
        }
    }
    match client::put_static(&home, &host, &parsed.to_string(), allow_remote) {
        Ok(_) => {}
        Err(ClientError::NotRunning(_)) => {
            home.ensure()?;
            StaticRoutes::edit(&home, |r| r.routes.insert(host.clone(), parsed.clone()))?;
        }
        Err(e) => return Err(e.into()),
    }
    let port = router_ctl::configured_port(&home)?;
    let url = trusted::origin(&home, port).url(&host);
    if json {
        println!("{}", serde_json::json!({"v": 1, "host": host, "url": url, "target": parsed.to_string()}));
    } else {
        eprintln!("agentfs: {url} → {parsed}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unroute(host: &str) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let host = normalize_host(host).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
    let missing =
        || anyhow::anyhow!("there is no static route for {host}; `agentfs ps` and the dashboard list what is routed");
    match client::delete_static(&home, &host) {
        Ok(()) => {}
        Err(ClientError::NotRunning(_)) => {
            if !home.root().exists() || !StaticRoutes::edit(&home, |r| r.routes.remove(&host).is_some())? {
                return Err(missing());
            }
        }
        Err(ClientError::Api { status: 404, .. }) => return Err(missing()),
        Err(e) => return Err(e.into()),
    }
    eprintln!("agentfs: removed the route for {host}");
    Ok(ExitCode::SUCCESS)
}
