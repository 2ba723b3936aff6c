//! The macOS launch logic, exercised on Linux against a simulated SIP:
//! programs under `AGENTFS_SIMULATE_SIP` strip `LD_PRELOAD` the way dyld
//! strips `DYLD_*` from protected programs. An npm-shaped chain —
//! `#!/usr/bin/env node` launcher → `sh -c "node server.js"` → a Node server
//! on a fixed port — must still be converted and routed; the same chain
//! without the simulation (so the strippers really run) provably loses the shim.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const START: Duration = Duration::from_secs(30);

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A protected directory with `env` and `sh` that drop LD_PRELOAD, and a
/// project whose launcher goes through both.
struct Chain {
    _dir: TempDir,
    sip: PathBuf,
    proj: PathBuf,
}

impl Chain {
    fn new() -> Chain {
        let dir = TempDir::new("sipchain");
        let sip = dir.path().join("sip");
        let proj = dir.path().join("proj");
        std::fs::create_dir_all(&sip).unwrap();
        std::fs::create_dir_all(&proj).unwrap();
        for (name, real) in [("env", "/usr/bin/env"), ("sh", "/bin/sh")] {
            let exe = compile_c("sip_strip.c", dir.path(), &["-static", &format!("-DREAL=\"{real}\"")]);
            std::fs::rename(exe, sip.join(name)).unwrap();
        }
        write_exe(
            &proj.join("launcher"),
            &format!(
                "#!{}/env node\nconst cmd = process.env.LAUNCH_CMD || 'node server.js';\n\
                 require('child_process').spawn('{}/sh', ['-c', cmd], {{ stdio: 'inherit' }})\
                 .on('exit', (c) => process.exit(c ?? 1));\n",
                sip.display(),
                sip.display()
            ),
        );
        std::fs::write(
            proj.join("server.js"),
            "const port = Number(process.env.APP_PORT || 3000);\n\
             require('http').createServer((q, s) => s.end('shim=' + !!process.env.LD_PRELOAD))\
             .listen(port, () => console.log('listening ' + port));\n",
        )
        .unwrap();
        Chain { _dir: dir, sip, proj }
    }
}

#[test]
fn an_npm_shaped_chain_through_protected_env_and_sh_is_still_routed() {
    let chain = Chain::new();
    let env = Env::new("sip");
    for (instance, launch_cmd, shell) in
        [("simple", "node server.js", None), ("complex", "true && node server.js", Some("/bin/bash"))]
    {
        let mut cmd = env.agentfs(&["wrap", "--debug", "--name", "sipapp", "--instance", instance, "--", "./launcher"]);
        cmd.current_dir(&chain.proj).env("AGENTFS_SIMULATE_SIP", &chain.sip).env("LAUNCH_CMD", launch_cmd);
        if let Some(sh) = shell {
            cmd.env("AGENTFS_SHELL", sh);
        }
        let app = Proc::spawn(cmd);
        let host = format!("{instance}.sipapp.localhost");
        let r = wait_for(&format!("{host} routed"), START, || env.get(&host, "/").ok().filter(|r| r.status == 200));
        assert_eq!(r.body, "shim=true", "{}", app.output());
        assert!(env.home.sock(&format!("sipapp.{instance}.3000")).exists(), "{:?}", env.home.run_files());
        let log = app.stderr();
        assert!(log.contains("instead of the protected env"), "the wrapper ran node directly: {log}");
        let expected = if shell.is_some() { "is protected: runs /bin/bash instead" } else { "node directly" };
        assert!(log.contains(expected), "the shim planned the sh -c hop ({expected}): {log}");
    }
}

#[test]
fn the_same_chain_without_the_rewrite_loses_the_shim() {
    let chain = Chain::new();
    let env = Env::new("nosip");
    let port = free_port();
    let mut cmd = env.agentfs(&["wrap", "--no-router", "--name", "sipapp", "--instance", "main", "--", "./launcher"]);
    // As on macOS, where no seccomp interception converts a process that lost the shim.
    cmd.current_dir(&chain.proj).env("APP_PORT", port.to_string()).env(NO_SECCOMP.0, NO_SECCOMP.1);
    let mut app = Proc::spawn(cmd);
    app.wait_stdout(&format!("listening {port}"), START);
    let r = get_tcp(port, "x", "/", &[]).unwrap();
    assert_eq!(r.body, "shim=false", "the strippers ran: the server is on plain TCP without the shim");
    assert!(env.home.run_files().iter().all(|f| !f.ends_with(".sock")), "{:?}", env.home.run_files());
}

#[test]
fn doctor_tells_how_the_chain_will_be_launched() {
    let chain = Chain::new();
    let env = Env::new("sipdoctor");
    let mut cmd = env.agentfs(&["doctor", "--", "./launcher"]);
    cmd.current_dir(&chain.proj).env("AGENTFS_SIMULATE_SIP", &chain.sip);
    let mut p = Proc::spawn(cmd);
    p.wait(START);
    let out = p.stdout();
    assert!(
        out.contains("✓ launch: ./launcher: runs") && out.contains("node directly instead of the protected env"),
        "{out}"
    );
    assert!(out.contains("→ agentfs wrap does this by itself"), "{out}");
}
