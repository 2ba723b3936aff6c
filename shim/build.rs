//! Compiles the one piece Rust stable cannot write, the variadic `fcntl`
//! hooks, and links it into the cdylib only (never into unit-test binaries,
//! where a definition of `fcntl` would take over the test process).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/c/fcntl.c");
    let objects = cc::Build::new().file("src/c/fcntl.c").warnings(true).extra_warnings(true).compile_intermediates();
    for obj in &objects {
        println!("cargo:rustc-cdylib-link-arg={}", obj.display());
    }
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        // rustc's version script exports only Rust's own #[no_mangle] items;
        // a second anonymous script adds the C-defined hooks (GNU ld merges them).
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let script = out.join("c-exports.map");
        std::fs::write(&script, "{ global: fcntl; fcntl64; };\n").expect("write version script");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", script.display());
    }
}
