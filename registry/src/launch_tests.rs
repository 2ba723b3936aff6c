use std::collections::HashMap;

use super::*;

/// A file system where `/bin`, `/usr/bin` (not `/usr/local`) are protected, as on macOS.
#[derive(Default)]
struct Fs {
    files: HashMap<String, (Vec<u8>, bool)>,
}

impl Fs {
    fn exe(mut self, path: &str, head: &str) -> Fs {
        self.files.insert(path.into(), (head.as_bytes().to_vec(), false));
        self
    }
    fn refusing(mut self, path: &str) -> Fs {
        self.files.insert(path.into(), (b"\xca\xfe\xba\xbe".to_vec(), true));
        self
    }
}

impl Probe for Fs {
    fn is_executable(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }
    fn head(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).map(|f| f.0.clone())
    }
    fn is_protected(&self, path: &str) -> bool {
        (path.starts_with("/bin/") || path.starts_with("/usr/bin/")) && !path.starts_with("/usr/local/")
    }
    fn refuses_shim(&self, path: &str) -> bool {
        self.files.get(path).is_some_and(|f| f.1)
    }
}

const MACHO: &str = "\u{cf}\u{fa}\u{ed}\u{fe}";

fn mac() -> Rules {
    Rules { preload_var: "DYLD_INSERT_LIBRARIES", shebang_splits: true }
}

fn fs() -> Fs {
    Fs::default()
        .exe("/usr/bin/env", "\x7fELF")
        .exe("/bin/sh", "\x7fELF")
        .exe("/bin/bash", "\x7fELF")
        .exe("/opt/homebrew/bin/node", "\x7fELF")
        .exe("/opt/homebrew/bin/bash", "\x7fELF")
        .exe("/opt/homebrew/lib/node_modules/npm/bin/npm-cli.js", "#!/usr/bin/env node\nrequire('../lib/cli')")
}

fn env() -> Vec<String> {
    vec![
        "PATH=/opt/homebrew/bin:/usr/bin:/bin".into(),
        "AGENTFS_SHIM=/h/lib/x/libagentfs_shim.dylib".into(),
        "DYLD_INSERT_LIBRARIES=/h/lib/x/libagentfs_shim.dylib".into(),
        "HOME=/Users/u".into(),
    ]
}

fn launch(file: &str, argv: &[&str]) -> Launch {
    Launch {
        file: file.into(),
        search: false,
        path_var: Some("/opt/homebrew/bin:/usr/bin:/bin".into()),
        argv: argv.iter().map(|s| (*s).into()).collect(),
        env: env(),
    }
}

fn preload(plan: &Plan) -> Option<&str> {
    env_get(&plan.env, "DYLD_INSERT_LIBRARIES")
}

#[test]
fn an_env_shebang_runs_the_interpreter_directly() {
    let npm = "/opt/homebrew/lib/node_modules/npm/bin/npm-cli.js";
    let p = resolve(&launch(npm, &["npm", "run", "dev"]), &mac(), &fs());
    assert!(p.changed, "{p:?}");
    assert_eq!(p.path, "/opt/homebrew/bin/node");
    assert_eq!(p.argv, ["node", npm, "run", "dev"]);
    assert_eq!(preload(&p), Some("/h/lib/x/libagentfs_shim.dylib"));
    assert!(p.notes[0].contains("directly"), "{p:?}");
}

#[test]
fn env_with_assignments_and_options() {
    let fs = fs().exe("/work/tool", "#!/usr/bin/env -S NODE_ENV=dev -u HOME node --no-warnings\n");
    let p = resolve(&launch("/work/tool", &["tool", "x"]), &mac(), &fs);
    assert_eq!(p.path, "/opt/homebrew/bin/node");
    assert_eq!(p.argv, ["node", "--no-warnings", "/work/tool", "x"]);
    assert_eq!(env_get(&p.env, "NODE_ENV"), Some("dev"));
    assert_eq!(env_get(&p.env, "HOME"), None, "-u HOME");
    let fs = fs.exe("/work/chdir", "#!/usr/bin/env -C /tmp node\n");
    let p = resolve(&launch("/work/chdir", &["chdir"]), &mac(), &fs);
    assert_eq!(p.path, "/work/chdir", "an option env has and we do not emulate: launched as asked");
    assert!(p.notes[0].contains("not understood"), "{p:?}");
    let fs = fs.exe("/work/clean", "#!/usr/bin/env -i node\n");
    let p = resolve(&launch("/work/clean", &["clean"]), &mac(), &fs);
    assert!(!p.changed, "env -i empties PATH too, so node is not found, as with the real env: {p:?}");
    assert!(p.notes[0].contains("node is not on PATH"), "{p:?}");
}

#[test]
fn linux_passes_the_shebang_rest_as_one_argument() {
    let linux = Rules { preload_var: "LD_PRELOAD", shebang_splits: false };
    assert_eq!(shebang(b"#!/usr/bin/env node\n", &linux), Some(("/usr/bin/env".into(), vec!["node".into()])));
    assert_eq!(shebang(b"#!/bin/sh -e -x\r\n", &linux), Some(("/bin/sh".into(), vec!["-e -x".into()])));
    assert_eq!(
        shebang(b"#!/usr/bin/env -S a b\n", &linux),
        Some(("/usr/bin/env".into(), vec!["-S".into(), "a".into(), "b".into()]))
    );
    assert_eq!(shebang(b"#!/bin/sh -e -x\n", &mac()), Some(("/bin/sh".into(), vec!["-e".into(), "-x".into()])));
    assert_eq!(shebang(b"#! \n", &mac()), None);
    assert_eq!(shebang(b"echo hi", &mac()), None);
}

#[test]
fn a_protected_shell_with_a_simple_command_runs_it_directly() {
    let p = resolve(&launch("/bin/sh", &["sh", "-c", "PORT=3000 node server.js"]), &mac(), &fs());
    assert!(p.changed);
    assert_eq!((p.path.as_str(), p.argv.clone()), ("/opt/homebrew/bin/node", vec!["node".into(), "server.js".into()]));
    assert_eq!(env_get(&p.env, "PORT"), Some("3000"));
}

#[test]
fn a_protected_shell_with_a_complex_command_gets_an_unprotected_shell() {
    let p = resolve(&launch("/bin/sh", &["sh", "-c", "vite build && vite preview"]), &mac(), &fs());
    assert!(p.changed);
    assert_eq!(p.path, "/opt/homebrew/bin/bash");
    assert_eq!(p.argv, ["sh", "-c", "vite build && vite preview"], "argv[0] kept: bash runs in sh mode");
    let mut l = launch("/bin/sh", &["sh", "-c", "a | b"]);
    l.env.push("AGENTFS_SHELL=/custom/bash".into());
    let p = resolve(&l, &mac(), &fs().exe("/custom/bash", "\x7fELF"));
    assert_eq!(p.path, "/custom/bash", "$AGENTFS_SHELL first");
    let bare = Fs::default().exe("/bin/sh", "\x7fELF");
    let p = resolve(&launch("/bin/sh", &["sh", "-c", "a | b"]), &mac(), &bare);
    assert!(!p.changed && p.notes[0].contains("no unprotected shell"), "{p:?}");
}

#[test]
fn a_cleaned_environment_gets_the_shim_back() {
    let mut l = launch("/opt/homebrew/bin/node", &["node", "x.js"]);
    l.env.retain(|e| !e.starts_with("DYLD_INSERT_LIBRARIES="));
    let p = resolve(&l, &mac(), &fs());
    assert!(p.changed);
    assert_eq!(preload(&p), Some("/h/lib/x/libagentfs_shim.dylib"));
    l.env.push("DYLD_INSERT_LIBRARIES=/other.dylib".into());
    let p = resolve(&l, &mac(), &fs());
    assert_eq!(preload(&p), Some("/h/lib/x/libagentfs_shim.dylib:/other.dylib"), "others kept after it");
    let untouched = resolve(&launch("/opt/homebrew/bin/node", &["node"]), &mac(), &fs());
    assert!(!untouched.changed, "{untouched:?}");
}

#[test]
fn outside_an_instance_nothing_changes() {
    let mut l = launch("/bin/sh", &["sh", "-c", "node x"]);
    l.env.retain(|e| !e.starts_with("AGENTFS_SHIM="));
    assert!(!resolve(&l, &mac(), &fs()).changed);
}

#[test]
fn a_relative_path_entry_is_searched_like_execvp() {
    let fs = fs().exe("node_modules/.bin/vite", "#!/usr/bin/env node\n");
    let mut l = launch("vite", &["vite"]);
    l.search = true;
    l.path_var = Some("node_modules/.bin:/opt/homebrew/bin".into());
    let p = resolve(&l, &mac(), &fs);
    assert_eq!(p.path, "/opt/homebrew/bin/node");
    assert_eq!(p.argv, ["node", "node_modules/.bin/vite"]);
    assert_eq!(
        search_path("vite", Some(":/x"), &Fs::default().exe("./vite", "")),
        Some("./vite".into()),
        "empty entry is ."
    );
}

#[test]
fn a_missing_interpreter_is_launched_as_asked() {
    let fs = fs().exe("/work/app", "#!/usr/bin/env deno\n");
    let p = resolve(&launch("/work/app", &["app"]), &mac(), &fs);
    assert!(!p.changed);
    assert_eq!(p.path, "/work/app");
    assert!(p.notes[0].contains("deno is not on PATH"), "{p:?}");
    let mut l = launch("nope", &["nope"]);
    l.search = true;
    assert!(!resolve(&l, &mac(), &fs).changed, "not found: the real call reports ENOENT");
}

#[test]
fn a_script_without_a_shebang() {
    let fs = fs().exe("/work/run.sh", "node server.js\n");
    let p = resolve(&launch("/work/run.sh", &["run.sh"]), &mac(), &fs);
    assert!(!p.changed, "execve gives ENOEXEC by itself: {p:?}");
    let mut l = launch("/work/run.sh", &["run.sh", "a"]);
    l.search = true;
    let p = resolve(&l, &mac(), &fs);
    assert!(p.changed, "execvp would run it with the protected /bin/sh");
    assert_eq!(p.path, "/opt/homebrew/bin/bash");
    assert_eq!(p.argv, ["/bin/sh", "/work/run.sh", "a"]);
}

#[test]
fn a_protected_shell_script_gets_an_unprotected_shell() {
    let fs = fs().exe("/work/dev.sh", "#!/bin/bash -e\nnode server.js\n");
    let p = resolve(&launch("/work/dev.sh", &["dev.sh", "x"]), &mac(), &fs);
    assert_eq!(p.path, "/opt/homebrew/bin/bash");
    assert_eq!(p.argv, ["/bin/bash", "-e", "/work/dev.sh", "x"]);
}

#[test]
fn a_target_that_refuses_the_shim_runs_without_it() {
    let fs = fs().refusing("/opt/arm64e-only/tool");
    let p = resolve(&launch("/opt/arm64e-only/tool", &["tool"]), &mac(), &fs);
    assert!(p.changed);
    assert_eq!(preload(&p), None, "dyld would kill an arm64e process given an arm64 dylib");
    let mut l = launch("/opt/arm64e-only/tool", &["tool"]);
    l.env.push("DYLD_INSERT_LIBRARIES=/h/lib/x/libagentfs_shim.dylib:/other.dylib".into());
    l.env.remove(2);
    assert_eq!(preload(&resolve(&l, &mac(), &fs)), Some("/other.dylib"));
}

#[test]
fn a_target_that_refuses_the_shim_gets_the_port_wrap_set_aside() {
    let fs = fs().exe("/w/server", "\x7fELF").refusing("/w/server").exe("/w/node", "\x7fELF");
    let mut l = launch("/w/server", &["server"]);
    l.env.push("AGENTFS_STATIC_PORT=41234".into());
    l.env.push("PORT=3000".into());
    let p = resolve(&l, &mac(), &fs);
    assert_eq!(env_get(&p.env, "PORT"), Some("41234"));
    assert!(p.notes.iter().any(|n| n.contains("PORT=41234")), "{:?}", p.notes);
    l.file = "/w/node".into();
    assert_eq!(
        env_get(&resolve(&l, &mac(), &fs).env, "PORT"),
        Some("3000"),
        "a program the shim enters keeps its PORT"
    );
    let plain = resolve(&launch("/w/server", &["server"]), &mac(), &fs);
    assert_eq!(env_get(&plain.env, "PORT"), None, "no port set aside, none given");
}

#[test]
fn other_protected_programs_are_noted_and_left_alone() {
    let fs = fs().exe("/usr/bin/python3", MACHO);
    let p = resolve(&launch("/usr/bin/python3", &["python3", "-m", "http.server"]), &mac(), &fs);
    assert!(!p.changed);
    assert!(p.notes[0].contains("protected"), "{p:?}");
}

#[test]
fn a_protected_env_run_directly_runs_its_command() {
    let p = resolve(&launch("/usr/bin/env", &["env", "PORT=1", "node", "x.js"]), &mac(), &fs());
    assert_eq!((p.path.as_str(), p.argv.clone()), ("/opt/homebrew/bin/node", vec!["node".into(), "x.js".into()]));
    assert_eq!(env_get(&p.env, "PORT"), Some("1"));
}

#[test]
fn each_shell_gets_a_stand_in_of_its_kind() {
    let fs =
        fs().exe("/opt/homebrew/bin/zsh", "\x7fELF").exe("/work/z", "#!/bin/zsh\n").exe("/work/c", "#!/bin/csh -f\n");
    let p = resolve(&launch("/work/z", &["z"]), &mac(), &fs);
    assert_eq!(p.path, "/opt/homebrew/bin/zsh", "a zsh script runs with zsh, not bash");
    let p = resolve(&launch("/work/c", &["c"]), &mac(), &fs);
    assert!(!p.changed && p.notes[0].contains("no unprotected shell"), "csh has no stand-in: {p:?}");
    let only_zsh = Fs::default()
        .exe("/bin/bash", "\x7fELF")
        .exe("/opt/homebrew/bin/zsh", "\x7fELF")
        .exe("/work/b", "#!/bin/bash\n");
    let p = resolve(&launch("/work/b", &["b"]), &mac(), &only_zsh);
    assert!(!p.changed, "a bash script never runs under zsh: {p:?}");
    let sh_only_zsh = only_zsh.exe("/bin/sh", "\x7fELF");
    let p = resolve(&launch("/bin/sh", &["sh", "-c", "a | b"]), &mac(), &sh_only_zsh);
    assert_eq!(
        (p.path.as_str(), p.argv[0].as_str()),
        ("/opt/homebrew/bin/zsh", "sh"),
        "zsh emulates sh when called sh"
    );
}
