//! Builds the shim (release, for the target being built) and hands its path
//! to the CLI, which embeds it: `cargo run -- wrap ...` from a fresh clone
//! needs no separate install step. The shim is built in its own target
//! directory by a nested cargo, so the outer build's lock is never touched.
//!
//! `AGENTFS_SHIM_PREBUILT=<path>` embeds a shim built elsewhere (used by the
//! macOS cross-check and the release script, which link it with
//! cargo-zigbuild). It also records the commit `agentfs --version` prints.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("cli/ lives in the workspace").to_owned();
    println!("cargo:rerun-if-env-changed=AGENTFS_SHIM_PREBUILT");
    for dir in ["shim", "registry"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.toml").display());

    let file = if target.contains("apple") { "libagentfs_shim.dylib" } else { "libagentfs_shim.so" };
    let built = match env::var_os("AGENTFS_SHIM_PREBUILT") {
        Some(p) => PathBuf::from(p),
        None => build_shim(&workspace, &out, &target, file),
    };
    let embedded = out.join(file);
    std::fs::copy(&built, &embedded).unwrap_or_else(|e| panic!("cannot copy the shim from {}: {e}", built.display()));
    println!("cargo:rustc-env=AGENTFS_SHIM_BUILT={}", embedded.display());
    println!("cargo:rustc-env=AGENTFS_SHIM_FILE={file}");
    println!("cargo:rustc-env=AGENTFS_COMMIT={}", commit(&workspace));
    // A release names its own version (scripts/release.sh), else the crate's.
    println!("cargo:rerun-if-env-changed=AGENTFS_RELEASE_VERSION");
    let version = env::var("AGENTFS_RELEASE_VERSION").ok().filter(|v| !v.trim().is_empty());
    let version = version.unwrap_or_else(|| env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION"));
    println!("cargo:rustc-env=AGENTFS_VERSION={version}");
}

/// The commit `--version` names: `$AGENTFS_COMMIT` (a release built outside
/// git), else git's short hash of HEAD (`+dirty` with uncommitted changes
/// to tracked files), else `unknown`.
fn commit(workspace: &Path) -> String {
    println!("cargo:rerun-if-env-changed=AGENTFS_COMMIT");
    if let Some(c) = env::var("AGENTFS_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        return c.trim().to_owned();
    }
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(workspace).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(hash) = git(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".to_owned() };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // A new commit or checkout changes HEAD, its branch's ref or packed-refs.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/packed-refs");
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{hash}+dirty") } else { hash }
}

fn build_shim(workspace: &Path, out: &Path, target: &str, file: &str) -> PathBuf {
    let target_dir = out.join("shim-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--locked", "-p", "agentfs-shim", "--target", target, "--target-dir"])
        .arg(&target_dir);
    // The outer build's settings are not the shim's: clippy's wrapper, the
    // outer target directory and flags meant for the CLI stay out.
    for var in ["RUSTC_WORKSPACE_WRAPPER", "CLIPPY_ARGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build the shim: {e}"));
    if !status.success() {
        panic!("building the shim (agentfs-shim for {target}) failed; see the errors above");
    }
    target_dir.join(target).join("release").join(file)
}
