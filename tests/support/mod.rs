//! Shared pieces of the end-to-end tests: a private AGENTFS_HOME per test,
//! processes that are always ended (by pid) when a test finishes, polling
//! with deadlines instead of sleeps, and a minimal HTTP client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shim built for these tests (the one the CLI embeds).
pub fn shim() -> &'static str {
    env!("AGENTFS_SHIM_BUILT")
}

/// The `agentfs` binary.
pub fn agentfs() -> &'static str {
    env!("CARGO_BIN_EXE_agentfs")
}

/// A fixture under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

pub use agentfs_registry::testutil::TempDir;

mod git;
#[allow(unused_imports)] // not every test uses git
pub use git::{git, shop_repo};

/// An AGENTFS_HOME of a test, with its `run/` directory.
pub struct Home {
    dir: TempDir,
}

impl Home {
    pub fn new(tag: &str) -> Home {
        Home { dir: TempDir::new(tag) }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn run(&self) -> PathBuf {
        self.path().join("run")
    }
    pub fn sock(&self, stem: &str) -> PathBuf {
        self.run().join(format!("{stem}.sock"))
    }
    pub fn sidecar(&self, stem: &str) -> serde_json::Value {
        let bytes = std::fs::read(self.run().join(format!("{stem}.json"))).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
    /// File names in run/, sorted.
    pub fn run_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.run())
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A command with the shim loaded as a process of `app`/`instance`.
    pub fn wrapped(&self, app: &str, instance: &str, program: &str) -> Command {
        let mut c = Command::new(program);
        clean_env(&mut c);
        c.env("LD_PRELOAD", shim())
            .env("AGENTFS_HOME", self.path())
            .env("AGENTFS_APP", app)
            .env("AGENTFS_INSTANCE", instance)
            .env("AGENTFS_DEBUG", "stderr")
            .env_remove("AGENTFS_PORTS")
            .env_remove("AGENTFS_SKIP_PORTS")
            .env("PYTHONUNBUFFERED", "1");
        c
    }
}

/// A running process in a process group of its own. On drop it gets SIGTERM
/// (an `agentfs wrap` then stops the whole tree it owns, which is in a process
/// group of its own) and, if still there after 10 s, its group gets SIGKILL;
/// then it is reaped.
pub struct Proc {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
    _dir: TempDir,
}

impl Proc {
    /// Starts `cmd` with stdout/stderr captured to files.
    pub fn spawn(mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let dir = TempDir::new("proc");
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, out, err, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    pub fn output(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout(), self.stderr())
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits for exit within `timeout`; panics (with the output) otherwise.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {timeout:?}\n{}", self.output());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if out.contains(needle) {
                return out;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let out = self.stdout();
                if out.contains(needle) {
                    return out;
                }
                panic!("process exited ({status}) before printing {needle:?}\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {timeout:?}\n{}", self.output());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Proc {
    /// Whether the process has exited, without reaping it: its pid (and so
    /// its group's id) stays reserved until `child.wait()`.
    fn exited_unreaped(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is valid storage; waitid(2) with WNOWAIT
        // on our own child only fills it in.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            libc::waitid(libc::P_PID, self.pid(), &mut info, flags) == 0 && info.si_pid() != 0
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return; // reaped already (its status was collected): its pid may be reused.
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.exited_unreaped() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) on the process group this test created, whose
        // leader is not reaped yet: the kernel does not hand its id out again
        // meanwhile, so only our processes can receive this.
        unsafe { libc::kill(-(self.pid() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a file to exist.
pub fn wait_file(path: &Path, timeout: Duration) {
    wait_for(&format!("{}", path.display()), timeout, || path.exists().then_some(()));
}

/// A response: status code and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

fn read_response(mut s: impl Read) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Response { status, head: head.to_owned(), body: body.to_owned() })
}

/// `GET path` over a Unix socket, HTTP/1.0 (the server closes).
pub fn get_unix(sock: &Path, path: &str) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    read_response(s)
}

/// `GET path` over TCP with a Host header, HTTP/1.1 with `Connection: close`.
pub fn get_tcp(port: u16, host: &str, path: &str, extra: &[(&str, &str)]) -> std::io::Result<Response> {
    request_tcp(port, "GET", host, path, extra)
}

/// `METHOD path` with no body, as [`get_tcp`] sends a GET.
pub fn request_tcp(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(40)))?;
    let length = if method == "GET" { "" } else { "Content-Length: 0\r\n" };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{length}");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    read_response(s)
}

/// Whether the tests run as root (then they can also act as another user).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// Where `pip install --user` put Playwright for the real user: a test's
/// own HOME would hide it.
pub fn python_user_base() -> String {
    let out = Command::new("python3").args(["-m", "site", "--user-base"]).output().expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` consecutive TCP ports, all free (on IPv4 and IPv6) a moment ago.
pub fn free_ports(n: u16) -> u16 {
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() && std::net::TcpListener::bind(("::", p)).is_ok()
    };
    wait_for(&format!("{n} consecutive free ports"), Duration::from_secs(10), || {
        let base = free_port();
        (base.checked_add(n).is_some() && (base..base + n).all(free)).then_some(base)
    })
}

/// Compiles a C fixture with gcc into `dir`; returns the executable.
pub fn compile_c(source: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let exe = dir.join(Path::new(source).file_stem().unwrap());
    let status = Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(fixture(source))
        .args(extra)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed on {source}");
    exe
}

/// Removes every agentfs variable (and the preload variables) a test would
/// otherwise inherit from a wrapped shell.
pub fn clean_env(c: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("AGENTFS_") || k == "LD_PRELOAD" || k == "DYLD_INSERT_LIBRARIES" {
            c.env_remove(&key);
        }
    }
}

/// A private AGENTFS_HOME and router port for a test of the CLI. The router
/// it starts is stopped (by pid, if need be) when the test ends.
pub struct Env {
    pub home: Home,
    pub port: u16,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        Env { home: Home::new(tag), port: free_port() }
    }

    /// `agentfs ARGS` in this environment (nothing inherited from the caller's agentfs setup).
    pub fn agentfs(&self, args: &[&str]) -> Command {
        let mut c = Command::new(agentfs());
        clean_env(&mut c);
        c.args(args)
            .env("AGENTFS_HOME", self.home.path())
            .env("AGENTFS_HTTP_PORT", self.port.to_string())
            .env("PYTHONUNBUFFERED", "1");
        c
    }

    /// Runs `agentfs ARGS` to completion (30 s at most).
    pub fn run(&self, args: &[&str]) -> Finished {
        self.run_with(args, &[])
    }

    /// The same, with these variables set.
    pub fn run_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Finished {
        let mut c = self.agentfs(args);
        c.envs(vars.iter().copied());
        let mut p = Proc::spawn(c);
        let status = p.wait(Duration::from_secs(30));
        Finished { code: status.code(), stdout: p.stdout(), stderr: p.stderr() }
    }

    /// `GET path` with `Host: host` through the router.
    pub fn get(&self, host: &str, path: &str) -> std::io::Result<Response> {
        get_tcp(self.port, host, path, &[])
    }

    /// Waits until `host` answers 200 through the router.
    pub fn wait_routed(&self, host: &str, timeout: Duration) -> Response {
        wait_for(&format!("{host} to answer 200"), timeout, || self.get(host, "/").ok().filter(|r| r.status == 200))
    }

    /// Stops the background instances (`agentfs up`) a test left running:
    /// SIGTERM to each supervisor of this home (checked to still be one),
    /// SIGKILL after 15 s.
    fn stop_supervisors(&self) {
        let Ok(dir) = std::fs::read_dir(self.home.path().join("services")) else { return };
        let is_supervisor = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"supervise"))
        };
        let pids: Vec<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
            .filter(|p| is_supervisor(*p))
            .collect();
        for (sig, wait) in [(libc::SIGTERM, 15), (libc::SIGKILL, 2)] {
            for &pid in pids.iter().filter(|p| is_supervisor(**p)) {
                // SAFETY: kill(2) on a supervisor of this test's home (checked just before).
                unsafe { libc::kill(pid as i32, sig) };
            }
            let deadline = Instant::now() + Duration::from_secs(wait);
            while pids.iter().any(|p| is_supervisor(*p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The router's pid from its pidfile, if one runs.
    pub fn router_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.home.path().join("router.pid")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("pid ")).and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_supervisors();
        let pid = self.router_pid();
        let _ = self.agentfs(&["router", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let still_router = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).any(|w| w == b"router"))
        };
        if let Some(pid) = pid.filter(|p| still_router(*p)) {
            // SAFETY: kill(2) on the router this test started (checked to still be one).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `agentfs wrap ARGS` in `dir`, running in the background.
pub fn wrap_in(env: &Env, dir: &Path, args: &[&str]) -> Proc {
    wrap_in_with(env, dir, args, &[])
}

/// The same, with these variables set for the wrapper (and its command).
pub fn wrap_in_with(env: &Env, dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Proc {
    let mut all = vec!["wrap"];
    all.extend_from_slice(args);
    let mut cmd = env.agentfs(&all);
    cmd.current_dir(dir).envs(vars.iter().copied());
    Proc::spawn(cmd)
}

/// `AGENTFS_SECCOMP=0`: programs the shim cannot enter get the PORT fallback
/// and the listener scan, as where seccomp interception is not available.
pub const NO_SECCOMP: (&str, &str) = ("AGENTFS_SECCOMP", "0");

/// Whether `agentfs wrap` intercepts binds with seccomp here (what `doctor` says).
pub fn seccomp_available(env: &Env) -> bool {
    env.run(&["doctor"]).stdout.contains("interception for programs the shim cannot enter: seccomp user notification")
}

/// Waits until the process's stderr contains `needle`; returns it.
pub fn wait_stderr(p: &Proc, needle: &str, timeout: Duration) -> String {
    wait_for(&format!("{needle:?} on stderr"), timeout, || {
        let e = p.stderr();
        e.contains(needle).then_some(e)
    })
}

/// Ctrl-Z, `fg` and a typed line at an interactive bash running `agentfs
/// wrap WRAP_ARGS -- python3 -c <a line reader>` (tests/fixtures/job_control.py);
/// its JSON report (`stopped`, `answered`, `status`).
pub fn job_control(env: &Env, dir: &Path, wrap_args: &[&str]) -> serde_json::Value {
    let mut harness = Command::new("python3");
    clean_env(&mut harness);
    let reader = "print('READY', flush=True); print('GOT', input().upper())";
    harness.current_dir(dir).arg(fixture("job_control.py")).args(["READY", "hello", "GOT HELLO", "--"]);
    harness.arg(agentfs()).arg("wrap").args(wrap_args).args(["--", "python3", "-c", reader]);
    harness.env("AGENTFS_HOME", env.home.path()).env("AGENTFS_HTTP_PORT", env.port.to_string());
    let mut p = Proc::spawn(harness);
    assert!(p.wait(Duration::from_secs(120)).success(), "{}", p.output());
    serde_json::from_str(p.stdout().lines().last().unwrap()).unwrap()
}
