//! Who a wrapped command is. The app: `--name`, else package.json `name`,
//! else the git repository's directory (the main worktree's, for a linked
//! worktree), else the current directory. The instance: `--instance`, else
//! the current worktree's git branch, else a short hash of the directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use agentfs_registry::Label;
use agentfs_registry::names::fnv1a64;
use agentfs_registry::scan::Snapshot;

/// What git says about the current directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Git {
    /// Top of the current worktree.
    pub toplevel: Option<PathBuf>,
    /// Top of the main worktree (differs for a linked worktree).
    pub main_toplevel: Option<PathBuf>,
    /// Current branch; `None` when detached.
    pub branch: Option<String>,
}

impl Git {
    /// Asks git (if installed) about `dir`.
    pub fn probe(dir: &Path) -> Git {
        let run = |args: &[&str]| -> Option<String> {
            let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
            let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (out.status.success() && !s.is_empty()).then_some(s)
        };
        let Some(toplevel) = run(&["rev-parse", "--show-toplevel"]).map(PathBuf::from) else {
            return Git::default();
        };
        let common = run(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).map(PathBuf::from);
        let main_toplevel = common.as_deref().and_then(repository_dir).or_else(|| Some(toplevel.clone()));
        let branch = run(&["symbolic-ref", "--quiet", "--short", "HEAD"]);
        Git { toplevel: Some(toplevel), main_toplevel, branch }
    }
}

/// The directory that names the repository, from git's common directory:
/// `/src/shop/.git` → `/src/shop`; a bare `/src/shop.git` (worktrees beside
/// it) → `/src/shop`.
fn repository_dir(common: &Path) -> Option<PathBuf> {
    let name = common.file_name()?.to_str()?;
    if name == ".git" {
        return common.parent().map(Path::to_owned);
    }
    Some(common.with_file_name(name.strip_suffix(".git").unwrap_or(name)))
}

/// The app label.
/// The names `wrap` gives a command started in the current directory.
pub struct Here {
    pub cwd: PathBuf,
    pub app: Label,
    /// The instance id wanted (a running one of that id makes it `<id>-2`).
    pub wanted: Label,
}

/// The current directory and the app and instance names given by these
/// flags, else by the directory (see [`app`], [`instance`]).
pub fn here(name: Option<&str>, instance_flag: Option<&str>) -> Result<Here> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let git = Git::probe(&cwd);
    let app = app(name, &cwd, &git)?;
    let wanted = instance(instance_flag, &cwd, &git)?;
    Ok(Here { cwd, app, wanted })
}

pub fn app(flag: Option<&str>, cwd: &Path, git: &Git) -> Result<Label> {
    if let Some(name) = flag {
        return Label::parse(name).map_err(|e| anyhow::anyhow!("--name: {e}"));
    }
    let stop = git.toplevel.as_deref();
    let candidates =
        package_name(cwd, stop).into_iter().chain(git.main_toplevel.as_deref().and_then(dir_name)).chain(dir_name(cwd));
    for c in candidates {
        if let Some(label) = Label::sanitize(&c) {
            return Ok(label);
        }
    }
    bail!("cannot derive an app name from {}; pass --name APP", cwd.display())
}

/// The instance label (before de-duplication).
pub fn instance(flag: Option<&str>, cwd: &Path, git: &Git) -> Result<Label> {
    if let Some(id) = flag {
        return Label::parse_instance(id).map_err(|e| anyhow::anyhow!("--instance: {e} (and not all digits)"));
    }
    if let Some(label) = git.branch.as_deref().and_then(Label::sanitize_instance) {
        return Ok(label);
    }
    let hash = fnv1a64(cwd.as_os_str().as_encoded_bytes());
    Ok(Label::sanitize_instance(&format!("d{:08x}", hash >> 32)).expect("a hex string is a label"))
}

/// `name` from the nearest package.json between `dir` and `stop` (scope dropped).
fn package_name(dir: &Path, stop: Option<&Path>) -> Option<String> {
    for d in dir.ancestors() {
        if let Ok(text) = std::fs::read_to_string(d.join("package.json")) {
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            let name = json.get("name")?.as_str()?;
            return Some(name.rsplit('/').next().unwrap_or(name).to_owned());
        }
        if Some(d) == stop {
            break;
        }
    }
    None
}

fn dir_name(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// `id`, or `id-2`, `id-3`, ... when a live instance of `app` already uses it.
pub fn unique_instance(app: &Label, id: &Label, snap: &Snapshot) -> Label {
    let taken = |candidate: &Label| {
        snap.wrappers
            .iter()
            .any(|w| &w.app == app && &w.instance == candidate && agentfs_registry::liveness::pid_alive(w.wrapper_pid))
            || snap.listeners.iter().any(|l| l.app() == app && l.instance() == candidate && l.maybe_alive())
    };
    if !taken(id) {
        return id.clone();
    }
    for n in 2u32.. {
        let suffix = format!("-{n}");
        let base = &id.as_str()[..id.as_str().len().min(agentfs_registry::names::MAX_LABEL - suffix.len())];
        let candidate = Label::sanitize_instance(&format!("{}{suffix}", base.trim_end_matches('-')))
            .expect("a label with a numeric suffix is a label");
        if !taken(&candidate) {
            return candidate;
        }
    }
    unreachable!("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentfs_registry::testutil::TempDir;

    #[test]
    fn app_name_precedence() {
        let t = TempDir::new("ident");
        let repo = t.path().join("shop-repo");
        let sub = repo.join("web");
        std::fs::create_dir_all(&sub).unwrap();
        let git = Git { toplevel: Some(repo.clone()), main_toplevel: Some(repo.clone()), branch: None };
        assert_eq!(app(None, &sub, &git).unwrap().as_str(), "shop-repo", "git top-level");
        std::fs::write(repo.join("package.json"), r#"{"name":"@acme/Store"}"#).unwrap();
        assert_eq!(app(None, &sub, &git).unwrap().as_str(), "store", "package.json, scope dropped");
        assert_eq!(app(Some("x"), &sub, &git).unwrap().as_str(), "x");
        assert!(app(Some("Bad Name"), &sub, &git).is_err());
        let no_git = Git::default();
        assert_eq!(app(None, &t.path().join("shop-repo/web"), &no_git).unwrap().as_str(), "store");
        let plain = t.path().join("Plain Dir");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(app(None, &plain, &no_git).unwrap().as_str(), "plain-dir");
    }

    #[test]
    fn linked_worktrees_take_the_main_worktrees_name() {
        let git = Git {
            toplevel: Some("/src/shop-feat-x".into()),
            main_toplevel: Some("/src/shop".into()),
            branch: Some("feat/X".into()),
        };
        assert_eq!(app(None, Path::new("/src/shop-feat-x"), &git).unwrap().as_str(), "shop");
        assert_eq!(instance(None, Path::new("/src/shop-feat-x"), &git).unwrap().as_str(), "feat-x");
    }

    #[test]
    fn repositories_are_named_by_their_directory() {
        assert_eq!(repository_dir(Path::new("/src/shop/.git")), Some("/src/shop".into()));
        assert_eq!(repository_dir(Path::new("/src/shop.git")), Some("/src/shop".into()), "bare repo with worktrees");
        assert_eq!(repository_dir(Path::new("/src/shop")), Some("/src/shop".into()));
    }

    #[test]
    fn instance_fallbacks() {
        let git = Git::default();
        let a = instance(None, Path::new("/src/a"), &git).unwrap();
        assert_eq!(a, instance(None, Path::new("/src/a"), &git).unwrap(), "stable");
        assert_ne!(a, instance(None, Path::new("/src/b"), &git).unwrap());
        let digits = Git { branch: Some("1234".into()), ..Git::default() };
        assert_eq!(instance(None, Path::new("/"), &digits).unwrap().as_str(), "i1234");
        assert!(instance(Some("42"), Path::new("/"), &git).is_err());
    }

    #[test]
    fn live_duplicates_get_a_suffix() {
        let app = Label::parse("shop").unwrap();
        let id = Label::parse("main").unwrap();
        let mut snap = Snapshot::default();
        assert_eq!(unique_instance(&app, &id, &snap), id);
        for inst in ["main", "main-2"] {
            snap.wrappers.push(agentfs_registry::WrapperRecord {
                v: 1,
                app: app.clone(),
                instance: Label::parse(inst).unwrap(),
                wrapper_pid: std::process::id(),
                cmd: vec![],
                cwd: "/".into(),
                started_at_ms: 0,
                pgid: None,
                stop_timeout_secs: None,
                exits: Vec::new(),
                port: None,
                front_port: None,
            });
        }
        assert_eq!(unique_instance(&app, &id, &snap).as_str(), "main-3");
    }
}
