//! `agentfs mcp`: an MCP server on stdio (rmcp) for coding agents. Each tool
//! runs the `agentfs` command it stands for (`up --json`, `url --json`,
//! `down`, …) in the tool's `cwd` — the agent's worktree, which names the
//! instance exactly as in a terminal — and returns its JSON as structured
//! output; a failing command is a tool error carrying the CLI's own message.
//! Nothing but the protocol is written to stdout: the commands' output is
//! captured, and an instance's output goes to its log.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{Json, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version of every tool's output.
const V: u32 = 1;

pub fn run() -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async {
        let server = Agentfs::new().serve(rmcp::transport::stdio()).await.context("MCP initialisation failed")?;
        server.waiting().await.context("the MCP session failed")?;
        Ok(ExitCode::SUCCESS)
    })
}

const INSTRUCTIONS: &str = "agentfs runs several copies of a web app at once, each at its own \
    http://<instance>.<app>.localhost URL, with no port to choose: the app keeps its hard-coded port. \
    Start dev servers with `start` (never run them in a blocking shell), find a URL with `get_url`, read \
    their output with `logs`, stop them with `stop`. Pass your worktree as `cwd`: the instance is named by \
    its git branch, so parallel sessions never collide. Never kill a server you did not start.";

#[derive(Clone)]
pub struct Agentfs {
    tool_router: ToolRouter<Self>,
}

/// Where a tool acts.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Where {
    /// The directory (your worktree) whose instance is meant, as if the command ran there; default: the server's.
    pub cwd: Option<String>,
    /// `instance.app`, or an app (its default instance); default: the instance of `cwd`.
    pub target: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InCwd {
    /// The directory whose view to use; default: the server's.
    pub cwd: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UrlParams {
    pub cwd: Option<String>,
    /// `instance.app`, or an app; default: the instance of `cwd`.
    pub target: Option<String>,
    /// The URL of this port of the instance rather than of its primary one.
    pub port: Option<u16>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartParams {
    /// The directory to run it in (your worktree); default: the server's.
    pub cwd: Option<String>,
    /// The command and its arguments, e.g. ["npm", "run", "dev"].
    pub command: Vec<String>,
    /// App name (a DNS label); default: package.json's name, else the git repository's directory.
    pub name: Option<String>,
    /// Instance id (a DNS label); default: the git branch.
    pub instance: Option<String>,
    /// The port the instance's URL reaches; default: its front end.
    pub port: Option<u16>,
    /// Start it again when it fails (with backoff, at most 5 times within 60 s).
    #[serde(default)]
    pub restart_on_failure: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LogsParams {
    pub cwd: Option<String>,
    /// `instance.app`, or an app; default: the instance of `cwd`.
    pub target: Option<String>,
    /// How many of the last (matching) lines; default 100.
    pub lines: Option<usize>,
    /// Only lines containing this text.
    pub filter: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RouteParams {
    /// A host under .localhost, e.g. api.localhost.
    pub host: String,
    /// Where to send it: a Unix socket path, host:port, or a port.
    pub target: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HostParams {
    /// The host given to `route`.
    pub host: String,
}

/// Every instance, as `agentfs ps --json` lists them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Instances {
    pub v: u32,
    /// One row per listening port (and per starting, restarting or ended instance): app, instance, state, url, port, pid, …
    pub instances: Vec<Value>,
}

/// One instance and its URL.
#[derive(Debug, Serialize, JsonSchema)]
pub struct InstanceUrl {
    pub v: u32,
    pub url: String,
    /// Its row, as `agentfs ps --json` gives it.
    pub instance: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Done {
    pub v: u32,
    /// What was done, in one line.
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LogLines {
    pub v: u32,
    /// Each line as written to the log: a UTC timestamp, a space, the line.
    pub lines: Vec<String>,
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Agentfs {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentfs", env!("AGENTFS_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

#[tool_router(router = tool_router)]
impl Agentfs {
    pub fn new() -> Agentfs {
        Agentfs { tool_router: Self::tool_router() }
    }

    #[tool(description = "List the running instances (and those starting, restarting or ended), with URLs.")]
    async fn list_instances(&self, p: Parameters<InCwd>) -> Result<Json<Instances>, String> {
        let out = agentfs(p.0.cwd, args(["ps", "--json"])).await?;
        let instances = serde_json::from_str(&out).map_err(|e| format!("agentfs ps printed no JSON: {e}"))?;
        Ok(Json(Instances { v: V, instances }))
    }

    #[tool(description = "The URL of the instance of `cwd` (or of `target`); an error if it does not run.")]
    async fn get_url(&self, p: Parameters<UrlParams>) -> Result<Json<InstanceUrl>, String> {
        let mut a = args(["url", "--json"]);
        a.extend(p.0.target);
        if let Some(port) = p.0.port {
            a.extend(["--port".into(), port.to_string()]);
        }
        row(agentfs(p.0.cwd, a).await?, p.0.port)
    }

    #[tool(
        description = "Start a dev server in the background in `cwd`, as `agentfs up` does; returns once it listens, \
        with its URL (an error with its last log lines if it fails). Started again while it runs, it returns the same URL."
    )]
    async fn start(&self, p: Parameters<StartParams>) -> Result<Json<InstanceUrl>, String> {
        let s = p.0;
        if s.command.is_empty() {
            return Err("command is empty; give the program and its arguments, e.g. [\"npm\", \"run\", \"dev\"]".into());
        }
        let mut a = args(["up", "--json"]);
        for (flag, value) in [("--name", s.name), ("--instance", s.instance), ("--port", s.port.map(|p| p.to_string()))]
        {
            a.extend(value.map(|v| [flag.to_owned(), v]).into_iter().flatten());
        }
        if s.restart_on_failure {
            a.push("--restart=on-failure".into());
        }
        a.push("--".into());
        a.extend(s.command);
        row(agentfs(s.cwd, a).await?, None)
    }

    #[tool(
        description = "Stop an instance (started by `start`, `agentfs up` or `agentfs wrap`) and everything it started."
    )]
    async fn stop(&self, p: Parameters<Where>) -> Result<Json<Done>, String> {
        let mut a = args(["down"]);
        a.extend(p.0.target);
        done(agentfs_stderr(p.0.cwd, a).await?)
    }

    #[tool(description = "Restart a background instance; returns once it listens again, with its URL.")]
    async fn restart(&self, p: Parameters<Where>) -> Result<Json<InstanceUrl>, String> {
        let mut a = args(["restart", "--json"]);
        a.extend(p.0.target);
        row(agentfs(p.0.cwd, a).await?, None)
    }

    #[tool(
        description = "The last lines a background instance printed (stdout and stderr, timestamped), optionally only those containing `filter`."
    )]
    async fn logs(&self, p: Parameters<LogsParams>) -> Result<Json<LogLines>, String> {
        let l = p.0;
        let n = l.lines.unwrap_or(100);
        let read = if l.filter.is_some() { 1_000_000 } else { n };
        let mut a = args(["logs", "-n", &read.to_string()]);
        a.extend(l.target);
        let out = agentfs(l.cwd, a).await?;
        let mut lines: Vec<String> = out
            .lines()
            .filter(|line| l.filter.as_ref().is_none_or(|f| line.contains(f.as_str())))
            .map(str::to_owned)
            .collect();
        let lines = lines.split_off(lines.len().saturating_sub(n));
        Ok(Json(LogLines { v: V, lines }))
    }

    #[tool(
        description = "Send a host under .localhost to an HTTP server of yours (a Unix socket, host:port or a port), kept across restarts."
    )]
    async fn route(&self, p: Parameters<RouteParams>) -> Result<Json<Done>, String> {
        done(agentfs_stderr(None, args(["route", &p.0.host, &p.0.target])).await?)
    }

    #[tool(description = "Remove a route added with `route`.")]
    async fn unroute(&self, p: Parameters<HostParams>) -> Result<Json<Done>, String> {
        done(agentfs_stderr(None, args(["unroute", &p.0.host])).await?)
    }
}

fn args<const N: usize>(a: [&str; N]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// A row printed by `--json`: the instance and its URL (of `port`, if given).
fn row(out: String, port: Option<u16>) -> Result<Json<InstanceUrl>, String> {
    let instance: Value = serde_json::from_str(&out).map_err(|e| format!("agentfs printed no JSON: {e}"))?;
    let mut url = instance["url"].as_str().unwrap_or_default().to_owned();
    if let (Some(p), Some((scheme, host))) = (port, url.split_once("://")) {
        url = format!("{scheme}://{p}.{host}");
    }
    Ok(Json(InstanceUrl { v: V, url, instance }))
}

fn done((stdout, stderr): (String, String)) -> Result<Json<Done>, String> {
    let said = if stderr.trim().is_empty() { stdout } else { stderr };
    let message = said.lines().map(|l| l.trim_start_matches("agentfs: ")).collect::<Vec<_>>().join("; ");
    Ok(Json(Done { v: V, message }))
}

/// Runs `agentfs ARGS` in `cwd`; its stdout, or what it said on stderr when it failed.
async fn agentfs(cwd: Option<String>, args: Vec<String>) -> Result<String, String> {
    agentfs_stderr(cwd, args).await.map(|(out, _)| out)
}

/// The same, with its stderr too (where `down`, `route` say what they did).
async fn agentfs_stderr(cwd: Option<String>, args: Vec<String>) -> Result<(String, String), String> {
    let dir = match cwd {
        Some(c) => {
            let dir = PathBuf::from(&c);
            if !dir.is_absolute() || !dir.is_dir() {
                return Err(format!("agentfs: cwd {c:?} is not an absolute path of a directory"));
            }
            dir
        }
        None => std::env::current_dir().map_err(|e| format!("agentfs: cannot read the current directory: {e}"))?,
    };
    let run = move || -> Result<(String, String), String> {
        let exe = std::env::current_exe().map_err(|e| format!("agentfs: cannot find the agentfs executable: {e}"))?;
        let out = Command::new(exe)
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("agentfs: cannot run agentfs: {e}"))?;
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        match out.status.success() {
            true => Ok((stdout, stderr)),
            false => Err(stderr.trim_end().to_owned()),
        }
    };
    tokio::task::spawn_blocking(run).await.map_err(|e| format!("agentfs: {e}"))?
}
