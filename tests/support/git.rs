//! Git repositories for the tests that name instances by branch and worktree
//! (`wrap`'s naming rules, `agentfs url`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git -C dir ARGS`, which must succeed.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A repository `dir/shop` on branch main, and a linked worktree
/// `dir/shop-<b>` on each branch `b`, each with an index.html saying
/// `<branch> tree`. Returns the main worktree, then the others.
pub fn shop_repo(dir: &Path, branches: &[&str]) -> Vec<PathBuf> {
    let main = dir.join("shop");
    std::fs::create_dir(&main).unwrap();
    git(&main, &["init", "-q", "-b", "main"]);
    std::fs::write(main.join("index.html"), "main tree").unwrap();
    git(&main, &["add", "."]);
    git(&main, &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]);
    let mut trees = vec![main.clone()];
    for b in branches {
        let tree = dir.join(format!("shop-{b}"));
        git(&main, &["worktree", "add", "-q", "-b", b, tree.to_str().unwrap()]);
        std::fs::write(tree.join("index.html"), format!("{b} tree")).unwrap();
        trees.push(tree);
    }
    trees
}
