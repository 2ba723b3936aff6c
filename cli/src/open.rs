//! `agentfs open [TARGET]`: the instance's URL, found as `agentfs url`
//! finds it, in the default browser; without TARGET, this directory's
//! instance if it runs, else the dashboard (starting the router if need
//! be). The browser is `$BROWSER` when set, else `open` (macOS) or
//! `xdg-open`; the URL is printed too, for a terminal without one.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use agentfs_registry::Home;

use crate::url::{self, UrlTarget};

pub fn run(target: Option<UrlTarget>) -> Result<ExitCode> {
    let home = Home::from_env()?;
    let url = match target {
        Some(t) => url::find(&home, &t, false)?,
        None => match url::current_instance().and_then(|t| url::find(&home, &t, true)) {
            Ok(u) => u,
            Err(_) => dashboard(&home)?,
        },
    };
    println!("{url}");
    let opener = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let program = opener.as_deref().unwrap_or(if cfg!(target_vendor = "apple") { "open" } else { "xdg-open" });
    let status = Command::new(program)
        .arg(&url)
        .status()
        .with_context(|| format!("cannot run {program} to open {url} (set $BROWSER to choose a browser)"))?;
    if !status.success() {
        bail!("{program} could not open {url} ({status})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The dashboard's URL, once the router answers there.
fn dashboard(home: &Home) -> Result<String> {
    let port = crate::router_ctl::ensure_running(home)?;
    Ok(format!("{}/", agentfs_registry::trusted::origin(home, port).url("localhost")))
}
