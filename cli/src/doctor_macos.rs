//! `agentfs doctor -- CMD` on macOS: can the shim survive each program of the
//! launch chain? The decisions are pure functions of what `codesign`, `file`
//! and `ls -lO` print (so they are tested on any platform from recorded
//! outputs); gathering those outputs runs only on macOS. Every finding says
//! what agentfs will do or how to fix it.
#![cfg_attr(not(target_vendor = "apple"), allow(dead_code))]

use agentfs_registry::binary::Binary;
use agentfs_registry::codesign::{CodeSign, entitled};
use agentfs_registry::launch_probe::is_sip_location;

use crate::doctor::Finding;

const DYLD_ENT: &str = "com.apple.security.cs.allow-dyld-environment-variables";
const LV_ENT: &str = "com.apple.security.cs.disable-library-validation";

/// What the tools said about one program.
pub struct ProgramFacts<'a> {
    pub path: &'a str,
    /// Under a SIP location (/bin, /usr/bin, /System...).
    pub sip_path: bool,
    /// `ls -lO PATH`.
    pub ls_flags: &'a str,
    /// `codesign -d --entitlements - --verbose=2 PATH` (stdout and stderr).
    pub codesign: &'a str,
    /// `file PATH`.
    pub file: &'a str,
}

/// Shells and settings around the chain.
pub struct MacEnv {
    /// An unprotected shell agentfs can use (`$AGENTFS_SHELL` or Homebrew's).
    pub shell: Option<String>,
    /// `npm config get script-shell`, if npm is installed.
    pub npm_script_shell: Option<String>,
    /// `xattr -p com.apple.quarantine SHIM` output, if the attribute is set.
    pub shim_quarantine: Option<String>,
    pub shim: String,
}

fn finding(ok: bool, what: String, fix: &str) -> Finding {
    Finding { ok, what, fix: Some(fix.to_owned()) }
}

/// The signature as `codesign` prints it (unsigned: all false).
pub fn parse_codesign(text: &str) -> CodeSign {
    let flags = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("flags=0x"))
        .and_then(|w| u32::from_str_radix(w.split('(').next().unwrap_or(""), 16).ok())
        .unwrap_or(0);
    let has = |name: &str| entitled(text, name) || bracket_entitled(text, name);
    CodeSign {
        hardened: flags & 0x1_0000 != 0,
        restricted: flags & 0x800 != 0,
        allow_dyld_env: has(DYLD_ENT),
        disable_library_validation: has(LV_ENT),
    }
}

/// `[Key] name` followed by `[Bool] true` (codesign's non-XML dump).
fn bracket_entitled(text: &str, name: &str) -> bool {
    let Some(at) = text.find(&format!("[Key] {name}")) else { return false };
    let after = &text[at + name.len() + 6..];
    after.find("[Bool]").is_some_and(|b| after[b + 6..].trim_start().starts_with("true"))
}

/// The architectures `file` lists.
pub fn parse_file(text: &str) -> Option<Binary> {
    if !text.contains("Mach-O") {
        return None;
    }
    let words: Vec<&str> = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    Some(Binary::MachO {
        arm64: words.contains(&"arm64"),
        arm64e: words.contains(&"arm64e"),
        x86_64: words.contains(&"x86_64"),
    })
}

/// Findings for one program of the chain (`aarch64`: the Mac is Apple Silicon).
pub fn judge_program(f: &ProgramFacts, env: &MacEnv, aarch64: bool) -> Vec<Finding> {
    let name = f.path.rsplit('/').next().unwrap_or(f.path);
    let protected = f.sip_path || f.ls_flags.split([' ', ',']).any(|w| w == "restricted");
    if protected {
        return vec![protected_finding(f.path, name, env)];
    }
    let mut v = Vec::new();
    if parse_file(f.file).is_some_and(|b| b.refuses_shim_on(aarch64)) {
        v.push(finding(
            false,
            format!("{} runs as arm64e here: dyld kills an arm64e process given the (arm64) shim", f.path),
            "agentfs leaves the shim out for it and, if it is the command itself, routes it through PORT",
        ));
    }
    let sign = parse_codesign(f.codesign);
    v.push(if sign.kills_with_shim() {
        finding(
            false,
            format!(
                "{}: hardened runtime allows DYLD variables but not unsigned libraries: dyld would kill it",
                f.path
            ),
            "agentfs leaves the shim out for it; use a build with com.apple.security.cs.disable-library-validation \
             (official Node, Bun and Deno have it) or a Homebrew build",
        )
    } else if sign.ignores_dyld_env() {
        finding(
            false,
            format!("{}: hardened runtime without {DYLD_ENT}: dyld ignores the shim", f.path),
            "use a Homebrew build or one signed with that entitlement (official Node, Bun, Deno), \
             or make the app listen on $PORT and use `agentfs route`",
        )
    } else {
        let how = if sign.hardened { "hardened, with the DYLD entitlements" } else { "not hardened" };
        finding(true, format!("{} is {how}: the shim loads", f.path), "nothing to do")
    });
    v
}

fn protected_finding(path: &str, name: &str, env: &MacEnv) -> Finding {
    let what = format!("{path} is protected (SIP or restricted): DYLD variables are deleted when it starts");
    if name == "env" {
        return finding(
            true,
            what,
            "agentfs runs the program after `env` directly (e.g. `#!/usr/bin/env node` runs node)",
        );
    }
    if agentfs_registry::launch::is_shell(path) {
        return match &env.shell {
            Some(sh) => finding(
                true,
                what,
                &format!("agentfs runs simple `sh -c` commands directly and everything else with {sh}"),
            ),
            None => finding(
                false,
                what,
                "simple `sh -c` commands still run directly; for the rest `brew install bash` or set AGENTFS_SHELL \
                 to an unprotected shell",
            ),
        };
    }
    finding(
        false,
        what,
        "use a build outside the system folders (e.g. `brew install python`), or make the app listen on $PORT",
    )
}

/// Findings about npm's script shell and the shim file itself.
pub fn judge_env(env: &MacEnv) -> Vec<Finding> {
    let mut v = Vec::new();
    if let Some(shell) = &env.npm_script_shell {
        let shell = if shell.trim().is_empty() || shell.trim() == "null" { "/bin/sh" } else { shell.trim() };
        let protected = is_sip_location(shell.as_bytes());
        v.push(match (protected, &env.shell) {
            (false, _) => finding(true, format!("npm runs scripts with {shell}"), "nothing to do"),
            (true, Some(sh)) => finding(
                true,
                format!("npm runs scripts with {shell} (protected)"),
                &format!("agentfs runs simple scripts directly and the rest with {sh}"),
            ),
            (true, None) => finding(
                false,
                format!("npm runs scripts with {shell} (protected) and no unprotected shell is installed"),
                "`brew install bash`, or `npm config set script-shell /opt/homebrew/bin/bash`",
            ),
        });
    }
    if let Some(q) = env.shim_quarantine.as_ref().filter(|q| !q.trim().is_empty()) {
        v.push(finding(
            false,
            format!("the shim {} is quarantined ({}): dyld refuses to load it", env.shim, q.trim()),
            &format!("xattr -d com.apple.quarantine {}", env.shim),
        ));
    }
    v
}

#[cfg(test)]
#[path = "doctor_macos_tests.rs"]
mod tests;

/// Runs `codesign`, `file`, `ls -lO`, `npm` and `xattr` for the programs of
/// the chain and judges them.
#[cfg(target_vendor = "apple")]
pub fn check(chain: &[std::path::PathBuf], shim: &std::path::Path) -> Vec<Finding> {
    use agentfs_registry::launch::{HOMEBREW_SHELLS, Probe, SHELL_VAR};
    use agentfs_registry::launch_probe::RealProbe;
    use std::process::Command;

    let run = |cmd: &str, args: &[&std::ffi::OsStr]| -> Option<(bool, String)> {
        let o = Command::new(cmd).args(args).output().ok()?;
        Some((
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        ))
    };
    let probe = RealProbe::from_env();
    let shell = std::env::var(SHELL_VAR)
        .ok()
        .into_iter()
        .chain(HOMEBREW_SHELLS.iter().map(|s| (*s).to_owned()))
        .find(|s| probe.is_executable(s) && !probe.is_protected(s));
    let npm =
        run("npm", &["config".as_ref(), "get".as_ref(), "script-shell".as_ref()]).filter(|(ok, _)| *ok).map(|(_, o)| o);
    let quarantine = run("xattr", &["-p".as_ref(), "com.apple.quarantine".as_ref(), shim.as_os_str()])
        .filter(|(ok, _)| *ok)
        .map(|(_, o)| o);
    let env = MacEnv { shell, npm_script_shell: npm, shim_quarantine: quarantine, shim: shim.display().to_string() };
    let mut v = Vec::new();
    for p in chain {
        let path = p.display().to_string();
        let out = |cmd: &str, args: &[&str]| {
            let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
            a.push(p.as_os_str());
            run(cmd, &a).map(|(_, o)| o).unwrap_or_default()
        };
        let (ls, cs, file) =
            (out("ls", &["-lO"]), out("codesign", &["-d", "--entitlements", "-", "--verbose=2"]), out("file", &[]));
        let facts = ProgramFacts {
            path: &path,
            sip_path: is_sip_location(path.as_bytes()),
            ls_flags: &ls,
            codesign: &cs,
            file: &file,
        };
        v.extend(judge_program(&facts, &env, cfg!(target_arch = "aarch64")));
    }
    v.extend(judge_env(&env));
    v
}
