//! The command line: every command, flag and example in one place, so
//! `--help` and the README stay in step with what the code accepts.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

/// `agentfs --version`: the version and the commit it was built from.
pub const VERSION: &str = concat!(env!("AGENTFS_VERSION"), " (", env!("AGENTFS_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "agentfs",
    version = VERSION,
    about = "Run several copies of one web app at once, each at its own http://<instance>.<app>.localhost",
    long_about = "Run several copies of one web app at once, each at its own http://<instance>.<app>.localhost.\n\n\
        `agentfs wrap -- CMD` loads a shim into CMD that turns its TCP listeners into Unix sockets under \
        $AGENTFS_HOME/run (default ~/.agentfs/run); a router on loopback sends each *.localhost host to the \
        right socket. The app needs no change and never notices.",
    after_help = "Examples:\n  agentfs wrap -- npm run dev\n  agentfs wrap --instance review -- python3 -m http.server 8000\n  \
        agentfs up -- npm run dev\n  agentfs ps\n  agentfs url\n  agentfs logs -f\n  agentfs down\n  agentfs route api.localhost 127.0.0.1:9000\n  agentfs doctor -- npm run dev"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command with its ports routed at *.localhost.
    #[command(after_help = "Examples:\n  agentfs wrap -- npm run dev\n  \
        agentfs wrap --name shop --instance feat-x -- python3 -m http.server 8000\n  \
        agentfs wrap --replica -- node server.js      # a second process of the same instance, load-balanced\n  \
        agentfs wrap --port 3001 -- npm run dev       # the instance URL reaches port 3001, not the front end\n\n\
        The app is named by --name, else package.json's name, else the git repository's directory, else the \
        current directory; the instance by --instance, else the git branch, else a hash of the directory.\n\n\
        CMD runs in a process group of its own (in front at a terminal); signals sent to the wrapper reach the whole \
        group, and when CMD ends or is stopped, everything it started gets SIGTERM, then SIGKILL after \
        $AGENTFS_STOP_TIMEOUT_SECS (default 5). The exit status is CMD's.")]
    Wrap(WrapArgs),
    /// Start a command in the background, as `wrap` would; return once it listens, printing its URL.
    #[command(after_help = "Examples:\n  agentfs up -- npm run dev\n  \
        agentfs up --restart=on-failure -- python3 -m http.server 8000\n  \
        agentfs up --json -- node server.js | jq -r .url\n\n\
        The instance is named as `wrap` names it and runs detached from the terminal (it survives closing it, and \
        a router restart). Its output goes to $AGENTFS_HOME/logs/<app>.<instance>.log (see `agentfs logs`; rotated \
        at $AGENTFS_LOG_MAX_BYTES, default 8 MiB). Started again in the same place while it runs, it prints the \
        same URL. --restart=on-failure starts it again after a failure (after 0.25 s, doubling up to 8 s), at most 5 \
        times within 60 s. Exits 1 with the log's last lines if it exits or fails before listening.")]
    Up(UpArgs),
    /// Stop an instance (one started by `up` or `wrap`) and everything it started.
    #[command(after_help = "Examples:\n  agentfs down               # this directory's instance\n  \
        agentfs down feat.shop\n\nTARGET: instance.app, or an app (its default instance); default: the instance \
        `agentfs wrap` in the current directory runs as.")]
    Down {
        /// instance.app or app; default: the current directory's instance.
        #[arg(value_parser = crate::url::parse_target)]
        target: Option<crate::url::UrlTarget>,
    },
    /// Restart a background instance (started by `up`); print its URL once it listens again.
    #[command(after_help = "Examples:\n  agentfs restart\n  agentfs restart feat.shop --json")]
    Restart {
        /// instance.app or app; default: the current directory's instance.
        #[arg(value_parser = crate::url::parse_target)]
        target: Option<crate::url::UrlTarget>,
        /// Print the instance's row as `ps --json` does.
        #[arg(long)]
        json: bool,
        /// Give up waiting for it to listen after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u64,
    },
    /// Print a background instance's output (timestamped), from logs/<app>.<instance>.log.
    #[command(after_help = "Examples:\n  agentfs logs\n  agentfs logs -f feat.shop\n  agentfs logs -n 20")]
    Logs {
        /// instance.app or app; default: the current directory's instance.
        #[arg(value_parser = crate::url::parse_target)]
        target: Option<crate::url::UrlTarget>,
        /// Keep printing what it writes (until interrupted).
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
        lines: usize,
    },
    /// Serve the Model Context Protocol on stdio, for coding agents (tools: list_instances, get_url, start, stop,
    /// restart, logs, route, unroute).
    #[command(after_help = "Examples:\n  claude mcp add agentfs -- agentfs mcp\n  \
        codex mcp add agentfs -- agentfs mcp\n\n\
        Each tool runs the agentfs command it stands for in the tool's `cwd` (the agent's worktree) and returns its \
        JSON (\"v\":1); errors carry the command's own message. See the README's MCP section.")]
    Mcp,
    /// The supervisor of a background instance (started by `up`).
    #[command(hide = true)]
    Supervise(UpArgs),
    /// List what runs: one line per listening port, and one per instance still starting or crashed.
    #[command(after_help = "Examples:\n  agentfs ps\n  agentfs ps --json | jq '.[] | select(.default)'")]
    Ps {
        /// Print a JSON array (app, instance, state, port, pid, url, socket, started_at_ms, default, ...).
        #[arg(long)]
        json: bool,
    },
    /// Print the URL of this directory's instance (by wrap's naming rules), or of TARGET.
    #[command(after_help = "Examples:\n  agentfs url                  # the instance `agentfs wrap` here runs as\n  \
        agentfs url feat.shop        # instance feat of app shop\n  \
        agentfs url shop --port 8001 # http://8001.<instance>.shop.localhost:<port>\n  \
        open $(agentfs url)\n\n\
        Prints one line and exits 0 while the instance runs (also while it starts: the router waits for it);\n\
        exits 1 with one line on stderr when it does not run, crashed, or has no such port.")]
    Url {
        /// instance.app, or an app (its default instance); default: the current directory's instance.
        #[arg(value_parser = crate::url::parse_target)]
        target: Option<crate::url::UrlTarget>,
        /// The URL of this port of the instance (http://N.<instance>.<app>.localhost).
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Print the instance's row as `ps --json` does (of the primary port, or of --port).
        #[arg(long)]
        json: bool,
    },
    /// Open the URL of this directory's instance, or of TARGET, in the browser (else the dashboard).
    #[command(after_help = "Examples:\n  agentfs open            # this directory's instance, or the dashboard\n  \
        agentfs open feat.shop  # instance feat of app shop\n\n\
        The browser is $BROWSER when set, else open (macOS) or xdg-open. The URL is printed too.")]
    Open {
        /// instance.app, or an app (its default instance).
        #[arg(value_parser = crate::url::parse_target)]
        target: Option<crate::url::UrlTarget>,
    },
    /// Send a host to an HTTP server: a Unix socket, host:port or port (kept across restarts).
    #[command(after_help = "Examples:\n  agentfs route api.localhost 127.0.0.1:9000\n  \
        agentfs route docs.localhost /tmp/docs.sock\n  agentfs route storybook.localhost 6006\n\n\
        Targets are HTTP servers of yours on this machine: loopback ports, or Unix sockets you own outside\n\
        the agentfs home. Another host only with --allow-remote; link-local addresses never.")]
    Route {
        /// Host under .localhost, e.g. api.localhost.
        host: String,
        /// /path/to.sock | host:port | port.
        target: String,
        /// Allow a TCP target that is not on this machine's loopback (a server on the LAN).
        #[arg(long)]
        allow_remote: bool,
        /// Print the route as JSON ({"v":1,"host","url","target"}).
        #[arg(long)]
        json: bool,
    },
    /// Remove a route added with `agentfs route`.
    #[command(after_help = "Example:\n  agentfs unroute api.localhost")]
    Unroute {
        /// The host given to `agentfs route`.
        host: String,
    },
    /// Run, start, stop or inspect the router.
    #[command(subcommand)]
    Router(RouterCommand),
    /// Check this machine (and optionally a command) and say how to fix what is wrong.
    #[command(after_help = "Examples:\n  agentfs doctor\n  agentfs doctor -- npm run dev")]
    Doctor {
        /// Print JSON ({"v":1,"ok","checks":[{"ok","what","fix"}]}).
        #[arg(long)]
        json: bool,
        /// A command to check: can the shim enter it?
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Trust the local CA, so that browsers, curl and Node accept https://…localhost (URLs switch to https).
    #[command(
        after_help = "Examples:\n  agentfs trust            # your browsers' NSS databases (Linux) / login keychain (macOS); \
        the system store too when run as root\n  \
        agentfs trust --status   # where it is trusted\n  \
        agentfs trust --remove   # undo: removes only the agentfs CA, by its name\n\n\
        The CA is $AGENTFS_HOME/ca/root.pem (made on first use). Linux: certutil (libnss3-tools / nss-tools) adds it \
        to ~/.pki/nssdb (Chrome, Chromium) and to every Firefox profile; the system store \
        (update-ca-certificates, update-ca-trust) needs root: without it, the sudo command is printed. macOS: \
        `security add-trusted-cert` into the login keychain (--system: the System keychain, under sudo). Wrapped \
        apps get NODE_EXTRA_CA_CERTS either way."
    )]
    Trust(TrustArgs),
    /// Keep the routed *.localhost hosts in a marked block of /etc/hosts, for programs that do not resolve them.
    #[command(
        subcommand,
        after_help = "Examples:\n  sudo -E agentfs hosts sync\n  agentfs hosts status\n  sudo -E agentfs hosts clean\n\n\
        Only the block between `# >>> agentfs` and `# <<< agentfs <<<` is ever changed (lines `127.0.0.1 NAME` and \
        `::1 NAME`); the file is replaced atomically with its mode and owner, and nothing is written if it changed \
        meanwhile or would be empty. The file is $AGENTFS_HOSTS_FILE, else /etc/hosts (root's: run with sudo, keeping \
        your environment so that agentfs finds your routes)."
    )]
    Hosts(HostsCommand),
    /// Have the system start the router with its sockets already bound on loopback (no port in URLs, no root).
    #[command(
        after_help = "Examples:\n  agentfs install --dry-run              # print the units/plist and commands, change nothing\n  \
        sudo -E agentfs install --system      # Linux, ports below net.ipv4.ip_unprivileged_port_start\n\n\
        Linux: systemd user units (~/.config/systemd/user/agentfs-router.{socket,service}) when every port is at least \
        net.ipv4.ip_unprivileged_port_start, else system units (/etc/systemd/system, with --system as root) whose \
        socket hands 127.0.0.1 and [::1] to a router running as you. macOS: a LaunchAgent \
        (~/Library/LaunchAgents/dev.agentfs.router.plist) — only --dry-run there for now."
    )]
    Install(InstallArgs),
    /// Undo `agentfs install` (same flags).
    Uninstall(InstallArgs),
    /// Print shell completions.
    #[command(after_help = "Example:\n  agentfs completions bash > ~/.local/share/bash-completion/completions/agentfs")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct WrapArgs {
    /// App name (a DNS label); default: package.json name, git directory, or current directory.
    #[arg(long, value_name = "APP")]
    pub name: Option<String>,
    /// Instance id (a DNS label); default: git branch, or a hash of the current directory.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Join a running instance of the same id as a replica instead of taking `<id>-2`.
    #[arg(long)]
    pub replica: bool,
    /// Do not start the router.
    #[arg(long)]
    pub no_router: bool,
    /// The port the instance's URL reaches (default: its front end — the
    /// first port answering `GET /` with text/html — else the first it
    /// listens on). Also `AGENTFS_PORT`.
    #[arg(long, value_name = "N")]
    pub port: Option<String>,
    /// Log the shim's decisions to stderr.
    #[arg(long)]
    pub debug: bool,
    /// Also write the command's output to $AGENTFS_HOME/logs/<app>.<instance>.log (read it with `agentfs logs`);
    /// at a terminal the command gets a pty of its own so that it still sees one.
    #[arg(long)]
    pub log: bool,
    /// The command to run.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Clone, Debug, Args)]
pub struct UpArgs {
    /// App name (a DNS label); default: as `wrap`.
    #[arg(long, value_name = "APP")]
    pub name: Option<String>,
    /// Instance id (a DNS label); default: as `wrap`.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// The port the instance's URL reaches (as `wrap --port`).
    #[arg(long, value_name = "N")]
    pub port: Option<String>,
    /// Start it again when it fails: no | on-failure.
    #[arg(long, value_name = "WHEN", default_value = "no", value_parser = parse_restart)]
    pub restart: agentfs_registry::service::Restart,
    /// Print the instance's row as `ps --json` does, not the URL.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting for it to listen after this many seconds (it keeps running).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub wait: u64,
    /// Log the shim's decisions (to the instance's log).
    #[arg(long)]
    pub debug: bool,
    /// The command to run.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

fn parse_restart(s: &str) -> Result<agentfs_registry::service::Restart, String> {
    use agentfs_registry::service::Restart;
    match s {
        "no" => Ok(Restart::No),
        "on-failure" => Ok(Restart::OnFailure),
        _ => Err(format!("{s:?} is not a restart policy; use no or on-failure")),
    }
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The ports the system holds for the router (the first for http, a second for https; the router speaks both on each).
    #[arg(long, value_name = "P,P", value_delimiter = ',', default_value = "80,443")]
    pub ports: Vec<u16>,
    /// Print what would be written and run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Linux: system units in /etc/systemd/system (as root), the router running as you.
    #[arg(long)]
    pub system: bool,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Remove the CA from every store `agentfs trust` added it to (found by its name; nothing else is touched).
    #[arg(long, conflicts_with = "status")]
    pub remove: bool,
    /// Say where the CA is trusted; change nothing.
    #[arg(long, conflicts_with_all = ["system", "user"])]
    pub status: bool,
    /// The system store too (needs root: prints the sudo command otherwise, and fails).
    #[arg(long, conflicts_with = "user")]
    pub system: bool,
    /// Only your own stores: never the system store, even as root.
    #[arg(long)]
    pub user: bool,
    /// With --status: print JSON ({"v":1,"ca","stores":[{"what","store","trusted","fix"}],"https"}).
    #[arg(long, requires = "status")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Write the block: every routed host (instances, apps, static routes).
    Sync,
    /// Remove the block.
    Clean,
    /// Say whether the block lists exactly the routed hosts (exit 1 if not).
    Status {
        /// Print JSON ({"v":1,"file","in_sync","listed","routed"}).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Run the router in the foreground.
    Run(RunArgs),
    /// Start the router in the background (no-op if it runs).
    Start(PortArg),
    /// Stop the router (waits for in-flight requests).
    Stop,
    /// Say whether the router runs, where, and what it routes.
    Status {
        /// Print JSON ({"v":1,"running",...}; exit 3 when not running).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub port: PortArg,
    /// Log to this file, rotated by size while running (set by `router start`).
    #[arg(long, value_name = "PATH", hide = true)]
    pub log_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct PortArg {
    /// HTTP port (default: $AGENTFS_HTTP_PORT, else 80 where allowed, else 7355).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Also listen on all interfaces (0.0.0.0 and ::), not just loopback.
    #[arg(long)]
    pub lan: bool,
    /// Do not listen on the apps' original ports (localhost:5173 …); also AGENTFS_ORIGINAL_PORTS=0.
    #[arg(long)]
    pub no_original_ports: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn wrap_needs_a_command_after_dashes() {
        assert!(Cli::try_parse_from(["agentfs", "wrap"]).is_err());
        let cli = Cli::try_parse_from(["agentfs", "wrap", "--name", "shop", "--", "npm", "run", "dev"]).unwrap();
        let Command::Wrap(w) = cli.command else { panic!() };
        assert_eq!(w.name.as_deref(), Some("shop"));
        assert_eq!(w.command, ["npm", "run", "dev"]);
    }
}
