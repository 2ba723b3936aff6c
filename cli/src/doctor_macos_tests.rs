//! Recorded outputs of `codesign`, `file` and `ls -lO` on macOS.

use super::*;

const OFFICIAL_NODE: &str = "Executable=/usr/local/bin/node
Identifier=node
Format=Mach-O thin (arm64)
CodeDirectory v=20500 size=717489 flags=0x10000(runtime) hashes=22415+7 location=embedded
Authority=Developer ID Application: Node.js Foundation (HX7739G8FX)
TeamIdentifier=HX7739G8FX
Runtime Version=11.1.0
[Dict]
\t[Key] com.apple.security.cs.allow-dyld-environment-variables
\t[Value]
\t\t[Bool] true
\t[Key] com.apple.security.cs.allow-jit
\t[Value]
\t\t[Bool] true
\t[Key] com.apple.security.cs.disable-library-validation
\t[Value]
\t\t[Bool] true
";

const HOMEBREW_NODE: &str = "Executable=/opt/homebrew/Cellar/node/22.1.0/bin/node
Identifier=node
Format=Mach-O thin (arm64)
CodeDirectory v=20400 size=566127 flags=0x20002(adhoc,linker-signed) hashes=17688+0 location=embedded
Signature=adhoc
TeamIdentifier=not set
";

const HARDENED_PYTHON: &str = "Executable=/Library/Frameworks/Python.framework/Versions/3.12/bin/python3.12
CodeDirectory v=20500 size=1234 flags=0x10000(runtime) hashes=30+7 location=embedded
Authority=Developer ID Application: Python Software Foundation (BMM5U3QVKW)
<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<plist version=\"1.0\"><dict>
<key>com.apple.security.cs.allow-unsigned-executable-memory</key><true/>
<key>com.apple.security.cs.disable-library-validation</key><true/>
</dict></plist>
";

const HALF_ENTITLED: &str = "CodeDirectory v=20500 size=1 flags=0x10000(runtime) hashes=1+1 location=embedded
<plist><dict><key>com.apple.security.cs.allow-dyld-environment-variables</key><true/></dict></plist>";

const SYSTEM_SH_FILE: &str = "/bin/sh: Mach-O universal binary with 2 architectures: \
[x86_64:Mach-O 64-bit executable x86_64] [arm64e:Mach-O 64-bit executable arm64e]
/bin/sh (for architecture x86_64):\tMach-O 64-bit executable x86_64
/bin/sh (for architecture arm64e):\tMach-O 64-bit executable arm64e";

fn env(shell: Option<&str>) -> MacEnv {
    MacEnv {
        shell: shell.map(str::to_owned),
        npm_script_shell: Some("null".into()),
        shim_quarantine: None,
        shim: "/Users/u/.agentfs/lib/x/libagentfs_shim.dylib".into(),
    }
}

fn facts<'a>(path: &'a str, codesign: &'a str, file: &'a str) -> ProgramFacts<'a> {
    ProgramFacts { path, sip_path: false, ls_flags: "-rwxr-xr-x  1 u  admin  - 100 node", codesign, file }
}

fn each_has_a_remedy(v: &[Finding]) {
    assert!(v.iter().all(|f| f.fix.as_deref().is_some_and(|x| !x.is_empty())), "every finding has a remedy");
}

#[test]
fn signatures_as_codesign_prints_them() {
    let official = parse_codesign(OFFICIAL_NODE);
    assert!(official.hardened && official.allow_dyld_env && official.disable_library_validation);
    let brew = parse_codesign(HOMEBREW_NODE);
    assert!(!brew.hardened && !brew.ignores_dyld_env());
    let py = parse_codesign(HARDENED_PYTHON);
    assert!(py.hardened && !py.allow_dyld_env && py.disable_library_validation && py.ignores_dyld_env());
    assert!(parse_codesign(HALF_ENTITLED).kills_with_shim());
    assert_eq!(parse_codesign("/x: code object is not signed at all"), CodeSign::default());
}

#[test]
fn runtimes_that_take_the_shim() {
    for cs in [OFFICIAL_NODE, HOMEBREW_NODE] {
        let v = judge_program(
            &facts("/usr/local/bin/node", cs, "/usr/local/bin/node: Mach-O 64-bit executable arm64"),
            &env(None),
            true,
        );
        assert_eq!(v.len(), 1);
        assert!(v[0].ok && v[0].what.contains("the shim loads"), "{}", v[0].what);
        each_has_a_remedy(&v);
    }
}

#[test]
fn runtimes_that_refuse_it() {
    let f = "x: Mach-O 64-bit executable arm64";
    let v =
        judge_program(&facts("/Library/Frameworks/Python.framework/python3.12", HARDENED_PYTHON, f), &env(None), true);
    assert!(!v[0].ok && v[0].what.contains("dyld ignores the shim"), "{}", v[0].what);
    let v = judge_program(&facts("/opt/app/tool", HALF_ENTITLED, f), &env(None), true);
    assert!(
        !v[0].ok && v[0].what.contains("would kill it") && v[0].fix.as_deref().unwrap().contains("leaves the shim out")
    );
    let v = judge_program(
        &facts("/opt/app/e", HOMEBREW_NODE, "/opt/app/e: Mach-O 64-bit executable arm64e"),
        &env(None),
        true,
    );
    assert!(!v[0].ok && v[0].what.contains("arm64e"), "{}", v[0].what);
    let v = judge_program(
        &facts("/opt/app/e", HOMEBREW_NODE, "/opt/app/e: Mach-O 64-bit executable arm64e"),
        &env(None),
        false,
    );
    assert!(v.iter().all(|f| !f.what.contains("arm64e")), "an Intel Mac does not run it as arm64e");
    each_has_a_remedy(&v);
}

#[test]
fn protected_programs_in_the_chain() {
    let sh = ProgramFacts {
        path: "/bin/sh",
        sip_path: true,
        ls_flags: "-rwxr-xr-x  1 root  wheel  restricted,compressed 101232 Jan  1  2024 /bin/sh",
        codesign: "",
        file: SYSTEM_SH_FILE,
    };
    let with_bash = judge_program(&sh, &env(Some("/opt/homebrew/bin/bash")), true);
    assert!(with_bash[0].ok && with_bash[0].fix.as_deref().unwrap().contains("/opt/homebrew/bin/bash"));
    let without = judge_program(&sh, &env(None), true);
    assert!(!without[0].ok && without[0].fix.as_deref().unwrap().contains("brew install bash"));
    let envp = ProgramFacts { path: "/usr/bin/env", ..sh };
    let v = judge_program(&envp, &env(None), true);
    assert!(v[0].ok && v[0].fix.as_deref().unwrap().contains("directly"));
    let py = ProgramFacts { path: "/usr/bin/python3", ..envp };
    let v = judge_program(&py, &env(None), true);
    assert!(!v[0].ok && v[0].fix.as_deref().unwrap().contains("brew install python"));
    let restricted = ProgramFacts { path: "/opt/x/tool", sip_path: false, ..py };
    assert!(judge_program(&restricted, &env(None), true)[0].what.contains("protected"), "ls -lO says restricted");
    assert_eq!(parse_file(SYSTEM_SH_FILE), Some(Binary::MachO { arm64: false, arm64e: true, x86_64: true }));
}

#[test]
fn npm_script_shell_and_quarantine() {
    let v = judge_env(&env(Some("/opt/homebrew/bin/bash")));
    assert!(v[0].ok && v[0].what.contains("/bin/sh (protected)"), "{}", v[0].what);
    let v = judge_env(&env(None));
    assert!(!v[0].ok && v[0].fix.as_deref().unwrap().contains("script-shell"));
    let mut e = env(None);
    e.npm_script_shell = Some("/opt/homebrew/bin/bash\n".into());
    e.shim_quarantine = Some("0083;65a1b2c3;Safari;\n".into());
    let v = judge_env(&e);
    assert!(v[0].ok);
    assert!(!v[1].ok && v[1].fix.as_deref().unwrap().starts_with("xattr -d com.apple.quarantine "));
    each_has_a_remedy(&v);
    e.npm_script_shell = None;
    e.shim_quarantine = None;
    assert!(judge_env(&e).is_empty());
}
