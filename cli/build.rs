//! Builds the shim (release, for the target being built) and hands its path
//! to the CLI, which embeds it: `cargo run -- wrap ...` from a fresh clone
//! needs no separate install step. The shim is built in its own target
//! directory by a nested cargo, so the outer build's lock is never touched.
//!
//! `AGENTFS_SHIM_PREBUILT=<path>` embeds a shim built elsewhere (used by the
//! macOS cross-check, which links it with cargo-zigbuild).

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
