#!/usr/bin/env bash
# The macOS build proven from Linux (no Mac here): type-checks the workspace
# for both Apple targets, links the real shim dylib for both with
# cargo-zigbuild, and fails unless its __DATA,__interpose section binds every
# hooked symbol (the $NOCANCEL variants included) and it has no arm64e slice.
# A download that fails (a registry out of reach) prints one SKIPPED line and
# exits 0; a check that fails exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(aarch64-apple-darwin x86_64-apple-darwin)
required=(bind listen accept 'accept$NOCANCEL' connect 'connect$NOCANCEL' getsockname getpeername
    setsockopt getsockopt close 'close$NOCANCEL' dup dup2 fcntl execve execv execvp posix_spawn posix_spawnp socket)

skip() { echo "SKIPPED macOS cross-check: $*"; exit 0; }
fail() { echo "FAILED macOS cross-check: $*"; exit 1; }

rustup target add "${targets[@]}" >/dev/null 2>&1 || skip "cannot download the Apple targets (rustup target add)"
if ! python3 -m ziglang version >/dev/null 2>&1; then
    pip install --quiet ziglang >/dev/null 2>&1 || skip "cannot install ziglang from PyPI"
fi
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-zigbuild >/dev/null 2>&1 || skip "cannot install cargo-zigbuild from crates.io"
fi
objdump=$(command -v llvm-objdump || ls /usr/lib/llvm-*/bin/llvm-objdump 2>/dev/null | tail -n 1 || true)
[ -n "$objdump" ] || skip "llvm-objdump is not installed"

# zig has no macOS SDK here: linking libSystem needs none, but the linker
# asks xcrun for one and warns; that warning is expected.
quiet() { grep -v -e 'xcrun' -e 'MacOSX.sdk' -e 'SDK is needed' -e 'DEVELOPER_DIR' -e '^ *|$' -e '^ *= ' || true; }
# Runs a command, showing its output without the expected SDK warning.
run() {
    local what=$1 out
    shift
    if ! out=$("$@" 2>&1); then
        quiet <<<"$out"
        fail "$what"
    fi
    quiet <<<"$out"
}

for target in "${targets[@]}"; do
    echo "==> $target: link the shim"
    run "linking the shim for $target" cargo zigbuild --quiet --release -p agentfs-shim --target "$target"
    dylib="target/$target/release/libagentfs_shim.dylib"
    [ -f "$dylib" ] || fail "$dylib was not produced"

    echo "==> $target: check the workspace (the CLI embeds the dylib just linked)"
    AGENTFS_SHIM_PREBUILT="$PWD/$dylib" run "cargo check --target $target" \
        cargo-zigbuild check --quiet --workspace --target "$target"

    header=$("$objdump" --macho --private-header "$dylib")
    grep -q 'DYLIB' <<<"$header" || fail "$dylib is not a Mach-O dylib"
    if grep -qi 'arm64e' <<<"$header"; then fail "$dylib has an arm64e slice"; fi

    bound=$("$objdump" --macho --bind "$dylib" | awk '$2 == "__interpose" { sub(/^_/, "", $NF); print $NF }' | sort -u)
    echo "interposed ($target): $(tr '\n' ' ' <<<"$bound")"
    for sym in "${required[@]}"; do
        grep -qxF -- "$sym" <<<"$bound" || fail "$target: __interpose does not bind $sym"
    done
done
echo "macOS cross-check passed: ${targets[*]}"
