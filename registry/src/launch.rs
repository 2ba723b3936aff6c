//! How a process of an instance starts another one without losing the shim.
//! macOS deletes every `DYLD_*` variable when it starts a SIP-protected
//! program (`/bin/sh`, `/usr/bin/env`), so `npm run dev` — `#!/usr/bin/env
//! node`, then `sh -c "..."` — would run the app without the shim. [`resolve`]
//! is a pure function of (path, argv, env, file probe) that both the shim's
//! exec hooks and `agentfs wrap` use to plan the launch instead:
//! - `#!/usr/bin/env X` (protected env) → X runs directly;
//! - a protected shell → a simple `sh -c 'cmd args'` runs `cmd` directly, any
//!   other use gets an unprotected shell (`$AGENTFS_SHELL`, then Homebrew's);
//! - the preload variable is put back (from `AGENTFS_SHIM`) when a child's
//!   environment lost it, and taken out for a target that cannot load it;
//! - such a target gets `PORT` from `AGENTFS_STATIC_PORT` (the port `wrap`
//!   set aside for it, routed once it listens).
//!
//! On Linux nothing is protected unless `AGENTFS_SIMULATE_SIP=<dir>` says so
//! (for tests); the same logic then runs and is tested end to end.

use crate::launch_shell::{ShellCommand, parse_simple_command};

/// Variable whose value is the shim's absolute path.
pub const SHIM_VAR: &str = "AGENTFS_SHIM";
/// Unprotected shell to use in place of a protected one.
pub const SHELL_VAR: &str = "AGENTFS_SHELL";
/// Test switch: programs under this directory count as SIP-protected.
pub const SIMULATE_SIP_VAR: &str = "AGENTFS_SIMULATE_SIP";

/// Shells that exist unprotected on a typical Mac (Homebrew on arm64 and x86_64).
pub const HOMEBREW_SHELLS: &[&str] =
    &["/opt/homebrew/bin/bash", "/usr/local/bin/bash", "/opt/homebrew/bin/zsh", "/usr/local/bin/zsh"];

/// What the file system says; a trait so the resolver is testable anywhere.
pub trait Probe {
    /// An executable regular file.
    fn is_executable(&self, path: &str) -> bool;
    /// The first bytes of the file (a shebang line, an ELF or Mach-O header).
    fn head(&self, path: &str) -> Option<Vec<u8>>;
    /// Starting it deletes the preload variable (SIP-protected, or simulated).
    fn is_protected(&self, path: &str) -> bool;
    /// The preload variable would kill it or be ignored (arm64e-only,
    /// restricted, statically linked): take the shim out.
    fn refuses_shim(&self, path: &str) -> bool;
}

/// A launch as the caller asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The path (execve, posix_spawn) or file name (execvp, posix_spawnp).
    pub file: String,
    /// Whether `file` is searched in PATH when it has no `/`.
    pub search: bool,
    /// PATH used for that search (the caller's, as execvp uses).
    pub path_var: Option<String>,
    pub argv: Vec<String>,
    /// `KEY=value` entries of the new program's environment.
    pub env: Vec<String>,
}

/// How to launch instead. `changed` is false when the original call is fine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub path: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub changed: bool,
    /// One line per decision, for the debug log and `agentfs doctor`.
    pub notes: Vec<String>,
}

/// The platform's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `LD_PRELOAD` or `DYLD_INSERT_LIBRARIES`.
    pub preload_var: &'static str,
    /// The kernel splits a shebang's arguments at spaces (macOS) or passes
    /// the rest of the line as one argument (Linux).
    pub shebang_splits: bool,
}

impl Rules {
    pub fn host() -> Rules {
        if cfg!(target_vendor = "apple") {
            Rules { preload_var: "DYLD_INSERT_LIBRARIES", shebang_splits: true }
        } else {
            Rules { preload_var: "LD_PRELOAD", shebang_splits: false }
        }
    }
}

/// Hops through interpreters and shells before giving up on rewriting.
const MAX_HOPS: usize = 6;

/// Plans `launch` so that the final program still loads the shim.
pub fn resolve(launch: &Launch, rules: &Rules, probe: &impl Probe) -> Plan {
    let mut plan = Plan {
        path: launch.file.clone(),
        argv: launch.argv.clone(),
        env: launch.env.clone(),
        changed: false,
        notes: Vec::new(),
    };
    let Some(shim) = env_get(&launch.env, SHIM_VAR).filter(|s| !s.is_empty()).map(str::to_owned) else {
        return plan;
    };
    if launch.search && !launch.file.contains('/') {
        match search_path(&launch.file, launch.path_var.as_deref(), probe) {
            Some(found) => plan.path = found,
            None => return plan,
        }
    }
    for _ in 0..MAX_HOPS {
        if !step(&mut plan, launch.search, rules, probe) {
            break;
        }
    }
    fix_preload(&mut plan, &shim, rules, probe);
    give_port(&mut plan, probe);
    plan
}

/// A program the shim cannot enter listens where `wrap` said (`PORT` from
/// `AGENTFS_STATIC_PORT`), so that `wrap` can route it and two copies of the
/// instance do not collide.
fn give_port(plan: &mut Plan, probe: &impl Probe) {
    let Some(port) = env_get(&plan.env, crate::env::STATIC_PORT).filter(|p| !p.is_empty()).map(str::to_owned) else {
        return;
    };
    if env_get(&plan.env, "PORT") == Some(port.as_str()) || !probe.refuses_shim(&plan.path) {
        return;
    }
    env_set(&mut plan.env, &format!("PORT={port}"));
    plan.notes.push(format!("{} cannot load the shim: PORT={port}, which agentfs wrap routes", plan.path));
    plan.changed = true;
}

/// One rewrite of the chain; false when nothing more needs doing.
fn step(plan: &mut Plan, search: bool, rules: &Rules, probe: &impl Probe) -> bool {
    if probe.is_protected(&plan.path) {
        let (path, argv) = (plan.path.clone(), plan.argv.clone());
        if is_named(&path, &["env"]) {
            return env_exec(plan, &argv[1.min(argv.len())..], None, &[], probe);
        }
        if is_shell(&path) {
            return replace_shell(plan, path, argv, probe);
        }
        plan.notes.push(format!("{path} is protected: the shim is lost"));
        return false;
    }
    let head = probe.head(&plan.path).unwrap_or_default();
    if let Some((interp, args)) = shebang(&head, rules) {
        if !probe.is_protected(&interp) {
            return false;
        }
        let script = plan.path.clone();
        let rest: Vec<String> = plan.argv.iter().skip(1).cloned().collect();
        if is_named(&interp, &["env"]) {
            return env_exec(plan, &args, Some(&script), &rest, probe);
        }
        if is_shell(&interp) {
            let mut argv = vec![interp.clone()];
            argv.extend(args);
            argv.push(script);
            argv.extend(rest);
            return replace_shell(plan, interp, argv, probe);
        }
        plan.notes.push(format!("{interp} is protected and not a shell or env: the shim is lost"));
        return false;
    }
    if search && !is_binary(&head) && !head.is_empty() && probe.is_protected("/bin/sh") {
        // execvp/posix_spawnp run a script without a shebang with /bin/sh.
        let mut argv = vec!["/bin/sh".to_owned(), plan.path.clone()];
        argv.extend(plan.argv.iter().skip(1).cloned());
        return replace_shell(plan, "/bin/sh".to_owned(), argv, probe);
    }
    false
}

/// A protected `env [options] X args` (run directly, or as the interpreter
/// of `script`) → `X args [script] rest`.
fn env_exec(plan: &mut Plan, args: &[String], script: Option<&str>, rest: &[String], probe: &impl Probe) -> bool {
    let mut words = args.iter();
    let mut env = plan.env.clone();
    let mut command = Vec::new();
    while let Some(w) = words.next() {
        if !command.is_empty() {
            command.push(w.clone());
            continue;
        }
        match w.as_str() {
            "-i" | "--ignore-environment" | "-" => env.clear(),
            "-u" | "--unset" => match words.next() {
                Some(name) => env.retain(|e| !e.starts_with(&format!("{name}="))),
                None => return give_up(plan, "env -u without a name"),
            },
            "-S" | "--split-string" | "--" => {}
            w if w.starts_with('-') => return give_up(plan, &format!("env option {w} is not understood")),
            w if is_assignment(w) => env_set(&mut env, w),
            w => command.push(w.to_owned()),
        }
    }
    let Some(program) = command.first() else { return give_up(plan, "env without a command") };
    let Some(found) = search_path(program, env_get(&env, "PATH"), probe) else {
        return give_up(plan, &format!("{program} is not on PATH"));
    };
    let what = script.unwrap_or("env");
    plan.notes.push(format!("{what}: runs {found} directly instead of the protected env"));
    plan.argv = command.into_iter().chain(script.map(str::to_owned)).chain(rest.iter().cloned()).collect();
    plan.path = found;
    plan.env = env;
    plan.changed = true;
    true
}

/// A protected shell: run a simple `-c` command directly, else swap in an
/// unprotected shell.
fn replace_shell(plan: &mut Plan, shell: String, argv: Vec<String>, probe: &impl Probe) -> bool {
    if let Some(ShellCommand { assignments, words }) = simple_dash_c(&argv) {
        if let Some(found) = search_path(&words[0], env_get(&plan.env, "PATH"), probe) {
            plan.notes.push(format!("{shell} -c {:?}: runs {found} directly", argv[2]));
            for a in &assignments {
                env_set(&mut plan.env, a);
            }
            plan.path = found;
            plan.argv = words;
            plan.changed = true;
            return true;
        }
    }
    let Some(replacement) = unprotected_shell(&shell, &plan.env, probe) else {
        plan.notes.push(format!("{shell} is protected and no unprotected shell was found: the shim is lost"));
        return false;
    };
    plan.notes.push(format!("{shell} is protected: runs {replacement} instead"));
    plan.path = replacement;
    plan.argv = argv;
    plan.changed = true;
    // The replacement runs the script or command itself: nothing more to do.
    false
}

/// `sh -c 'cmd args'` with nothing a shell is needed for.
fn simple_dash_c(argv: &[String]) -> Option<ShellCommand> {
    match argv {
        [_, flag, command] if flag == "-c" => parse_simple_command(command),
        _ => None,
    }
}

/// An unprotected shell that can stand in for `shell`: bash for sh, dash and
/// bash (`$AGENTFS_SHELL` first; zsh too for plain sh, which it emulates when
/// called `sh`), zsh for zsh; nothing for other shells.
fn unprotected_shell(shell: &str, env: &[String], probe: &impl Probe) -> Option<String> {
    let kind = shell.rsplit('/').next().unwrap_or(shell);
    let preferred = env_get(env, SHELL_VAR).filter(|s| !s.is_empty()).map(str::to_owned);
    let homebrew = |name: &str| ["/opt/homebrew/bin", "/usr/local/bin"].map(|d| format!("{d}/{name}"));
    let candidates: Vec<String> = match kind {
        "sh" | "dash" => preferred.into_iter().chain(homebrew("bash")).chain(homebrew("zsh")).collect(),
        "bash" => preferred.into_iter().chain(homebrew("bash")).collect(),
        "zsh" => homebrew("zsh").into_iter().collect(),
        other => preferred.filter(|p| p.rsplit('/').next() == Some(other)).into_iter().collect(),
    };
    candidates.into_iter().find(|s| probe.is_executable(s) && !probe.is_protected(s))
}

fn give_up(plan: &mut Plan, why: &str) -> bool {
    plan.notes.push(format!("{why}: launched as asked"));
    false
}

/// Puts the shim first in the preload variable, or takes it out when the
/// final program cannot load it.
fn fix_preload(plan: &mut Plan, shim: &str, rules: &Rules, probe: &impl Probe) {
    let current = env_get(&plan.env, rules.preload_var).unwrap_or("").to_owned();
    let entries: Vec<&str> = current.split(':').filter(|e| !e.is_empty()).collect();
    let has = entries.contains(&shim);
    if probe.refuses_shim(&plan.path) {
        if has {
            let kept: Vec<&str> = entries.into_iter().filter(|e| *e != shim).collect();
            set_or_remove(&mut plan.env, rules.preload_var, &kept.join(":"));
            plan.notes.push(format!("{} cannot load the shim: {} without it", plan.path, rules.preload_var));
            plan.changed = true;
        }
        return;
    }
    if !has {
        let value = std::iter::once(shim).chain(entries).collect::<Vec<_>>().join(":");
        env_set(&mut plan.env, &format!("{}={value}", rules.preload_var));
        plan.notes.push(format!("{} was lost: put back", rules.preload_var));
        plan.changed = true;
    }
}

/// Finds `name` in a PATH value (relative entries stay relative, as execvp does).
pub fn search_path(name: &str, path_var: Option<&str>, probe: &impl Probe) -> Option<String> {
    if name.contains('/') {
        return probe.is_executable(name).then(|| name.to_owned());
    }
    let path_var = path_var.unwrap_or("/usr/bin:/bin");
    path_var
        .split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{dir}/{name}"))
        .find(|c| probe.is_executable(c))
}

/// The interpreter and its arguments from a `#!` line.
pub fn shebang(head: &[u8], rules: &Rules) -> Option<(String, Vec<String>)> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r').trim();
    let (interp, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    if interp.is_empty() {
        return None;
    }
    let rest = rest.trim();
    let split =
        rules.shebang_splits || is_named(interp, &["env"]) && (rest.starts_with("-S ") || rest.starts_with("-S\t"));
    let args = match (rest.is_empty(), split) {
        (true, _) => Vec::new(),
        (false, true) => rest.split_whitespace().map(str::to_owned).collect(),
        (false, false) => vec![rest.to_owned()],
    };
    Some((interp.to_owned(), args))
}

fn is_binary(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
        || [[0xfe, 0xed, 0xfa, 0xcf], [0xcf, 0xfa, 0xed, 0xfe], [0xca, 0xfe, 0xba, 0xbe], [0xbe, 0xba, 0xfe, 0xca]]
            .iter()
            .any(|m| head.starts_with(m))
}

fn is_named(path: &str, names: &[&str]) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    names.contains(&base)
}

/// The shells SIP protects on macOS.
pub fn is_shell(path: &str) -> bool {
    is_named(path, &["sh", "bash", "zsh", "dash", "ksh", "tcsh", "csh"])
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// The value of `key` in `KEY=value` entries.
pub fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn env_set(env: &mut Vec<String>, assignment: &str) {
    let key = assignment.split('=').next().unwrap_or("");
    env.retain(|e| e.split('=').next() != Some(key));
    env.push(assignment.to_owned());
}

fn set_or_remove(env: &mut Vec<String>, key: &str, value: &str) {
    env.retain(|e| e.split('=').next() != Some(key));
    if !value.is_empty() {
        env.push(format!("{key}={value}"));
    }
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
