//! `agentfs url [TARGET] [--port N] [--json]`: one line answering "what is
//! my URL?" for scripts and agents (`open $(agentfs url)`). Without TARGET it
//! names the instance by `wrap`'s rules for the current directory (see
//! `identity`); the rows, and so the URLs and the JSON, are `ps`'s.

use std::process::ExitCode;

use anyhow::Result;

use agentfs_registry::Home;
use agentfs_registry::Label;

use crate::identity;
use crate::ps::{self, Row, State};

/// What `agentfs url` looks for: an instance of an app, or the app's default instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTarget {
    pub app: Label,
    pub instance: Option<Label>,
}

impl std::fmt::Display for UrlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instance {
            Some(i) => write!(f, "instance {i}.{}", self.app),
            None => write!(f, "instance of {}", self.app),
        }
    }
}

/// Parses TARGET: `instance.app` or `app`, with an optional `.localhost`.
pub fn parse_target(s: &str) -> Result<UrlTarget, String> {
    let name = s.strip_suffix(".localhost").unwrap_or(s);
    let bad = |why: String| format!("{why}; TARGET is instance.app or app, e.g. main.shop");
    let labels: Vec<&str> = name.split('.').collect();
    let (instance, app) = match labels[..] {
        [app] => (None, app),
        [instance, app] => (Some(instance), app),
        _ => return Err(bad(format!("{s:?} has {} dot-separated names, not 1 or 2", labels.len()))),
    };
    let app = Label::parse(app).map_err(|e| bad(format!("app: {e}")))?;
    let instance = instance
        .map(Label::parse_instance)
        .transpose()
        .map_err(|e| bad(format!("instance: {e} (and not all digits)")))?;
    Ok(UrlTarget { app, instance })
}

pub fn run(target: Option<UrlTarget>, port: Option<u16>, json: bool) -> Result<ExitCode> {
    let (target, from_cwd) = match target {
        Some(t) => (t, false),
        None => (current_instance()?, true),
    };
    let home = Home::from_env()?;
    let (rows, _swept) = ps::collect(&home)?;
    let row = pick(&rows, &target, port).map_err(|why| anyhow::anyhow!(why_not(&target, from_cwd, why)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(row)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", url_of_row(&home, &target, row, port)?);
    Ok(ExitCode::SUCCESS)
}

/// The URL of `target` (of `port`, or its primary port), or why there is none.
pub fn find(home: &Home, target: &UrlTarget, from_cwd: bool) -> Result<String> {
    let (rows, _swept) = ps::collect(home)?;
    let row = pick(&rows, target, None).map_err(|why| anyhow::anyhow!(why_not(target, from_cwd, why)))?;
    url_of_row(home, target, row, None)
}

fn url_of_row(home: &Home, target: &UrlTarget, row: &Row, port: Option<u16>) -> Result<String> {
    Ok(match port {
        Some(p) => {
            let origin = agentfs_registry::trusted::origin(home, crate::router_ctl::configured_port(home)?);
            let host = agentfs_registry::names::hostname(&target.app, Some(&label(&row.instance)?));
            origin.url(&format!("{p}.{host}"))
        }
        None => row.url.clone(),
    })
}

/// The instance `agentfs wrap` in the current directory is named (before
/// the `-2` suffix a second copy would get).
pub fn current_instance() -> Result<UrlTarget> {
    let here = identity::here(None, None)?;
    Ok(UrlTarget { app: here.app, instance: Some(here.wanted) })
}

fn label(s: &str) -> Result<Label> {
    Label::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Why no row answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    NotRunning,
    Crashed(String),
    /// A background instance that does not run now.
    Ended {
        restarting: bool,
        exit: Option<String>,
    },
    NoPort {
        port: u16,
        ports: Vec<u16>,
    },
}

/// The row of `target` (the primary port's, or `port`'s). An app alone
/// means its default instance, else one of its starting instances.
pub fn pick<'a>(rows: &'a [Row], target: &UrlTarget, port: Option<u16>) -> Result<&'a Row, Missing> {
    let of_app = || rows.iter().filter(|r| r.app == target.app.as_str());
    let instance = match &target.instance {
        Some(i) => i.as_str().to_owned(),
        None => match of_app().find(|r| r.default).or_else(|| of_app().next()) {
            Some(r) => r.instance.clone(),
            None => return Err(Missing::NotRunning),
        },
    };
    let mine: Vec<&Row> = of_app().filter(|r| r.instance == instance).collect();
    let Some(first) = mine.first() else { return Err(Missing::NotRunning) };
    match first.state {
        State::Crashed => return Err(Missing::Crashed(first.exit.clone().unwrap_or_default())),
        State::Restarting | State::Exited => {
            return Err(Missing::Ended { restarting: first.state == State::Restarting, exit: first.exit.clone() });
        }
        State::Live | State::Starting => {}
    }
    let found = match port {
        Some(p) => mine.iter().find(|r| r.port == Some(p)),
        None => mine.iter().find(|r| r.primary).or(mine.first()),
    };
    found.copied().ok_or_else(|| Missing::NoPort {
        port: port.unwrap_or_default(),
        ports: mine.iter().filter_map(|r| r.port).collect(),
    })
}

/// The one line for a missing instance or port: what was looked for, and what to do.
fn why_not(target: &UrlTarget, from_cwd: bool, missing: Missing) -> String {
    let start = match (&target.instance, from_cwd) {
        (_, true) => "agentfs wrap -- <command>".to_owned(),
        (Some(i), false) => format!("agentfs wrap --name {} --instance {i} -- <command>", target.app),
        (None, false) => format!("agentfs wrap --name {} -- <command>", target.app),
    };
    let named = match &target.instance {
        Some(i) => format!("{i}.{}", target.app),
        None => target.app.to_string(),
    };
    match missing {
        Missing::NotRunning => format!("no {target} is running (start it with {start})"),
        Missing::Crashed(exit) => {
            format!("{named} crashed ({exit}) while its wrapper runs (stop that, then start it again with {start})")
        }
        Missing::Ended { restarting, exit } => {
            let exit = exit.unwrap_or_else(|| "it ended".into());
            let now = if restarting { "is being restarted" } else { "is not running" };
            format!("{named} {now} in the background ({exit}); see agentfs logs {named}")
        }
        Missing::NoPort { port, ports } if ports.is_empty() => {
            format!("{named} listens on no port yet, so not on {port}")
        }
        Missing::NoPort { port, ports } => {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!("{named} has no port {port} (it listens on {})", list.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("main.shop").unwrap();
        assert_eq!((t.app.as_str(), t.instance.as_ref().map(Label::as_str)), ("shop", Some("main")));
        assert_eq!(parse_target("feat.shop.localhost").unwrap().instance.unwrap().as_str(), "feat");
        assert!(parse_target("shop").unwrap().instance.is_none());
        for bad in ["a.b.c.d", "UPPER!", "", "42.shop", "shop.", ".shop"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_lines_say_how_to_start() {
        let t = parse_target("feat.shop").unwrap();
        assert_eq!(
            why_not(&t, false, Missing::NotRunning),
            "no instance feat.shop is running (start it with agentfs wrap --name shop --instance feat -- <command>)"
        );
        let ports = Missing::NoPort { port: 9, ports: vec![8000, 8001] };
        assert_eq!(why_not(&t, true, ports), "feat.shop has no port 9 (it listens on 8000, 8001)");
    }

    fn row(instance: &str, state: State, port: Option<u16>, default: bool) -> Row {
        Row {
            app: "shop".into(),
            instance: instance.into(),
            state,
            port,
            pid: None,
            url: format!("http://{instance}.shop.localhost:7355"),
            socket: None,
            started_at_ms: 0,
            default,
            primary: port == Some(3000),
            wrapper_pid: Some(1),
            cmd: Vec::new(),
            exit: (state == State::Crashed).then(|| "pid 9, exit status 1".into()),
            restarts: None,
            last_exit: None,
            original_port: None,
            v: 1,
        }
    }

    #[test]
    fn picks_the_primary_row_the_default_instance_and_says_why_not() {
        let rows = [
            row("main", State::Live, Some(5173), true),
            row("main", State::Live, Some(3000), true),
            row("feat", State::Live, Some(3000), false),
            row("new", State::Starting, None, false),
            row("dead", State::Crashed, None, false),
        ];
        let t = |s: &str| parse_target(s).unwrap();
        assert_eq!(pick(&rows, &t("main.shop"), None).unwrap().port, Some(3000), "the primary port");
        assert_eq!(pick(&rows, &t("main.shop"), Some(5173)).unwrap().port, Some(5173));
        assert_eq!(pick(&rows, &t("shop"), None).unwrap().instance, "main", "the default instance");
        assert_eq!(pick(&rows, &t("new.shop"), None).unwrap().state, State::Starting, "starting: the router waits");
        assert_eq!(pick(&rows, &t("new.shop"), Some(1)).unwrap_err(), Missing::NoPort { port: 1, ports: vec![] });
        assert!(matches!(pick(&rows, &t("dead.shop"), None), Err(Missing::Crashed(e)) if e.contains("status 1")));
        assert_eq!(pick(&rows, &t("x.shop"), None).unwrap_err(), Missing::NotRunning);
        assert_eq!(pick(&rows, &t("blog"), None).unwrap_err(), Missing::NotRunning);
    }
}
