#!/usr/bin/env bash
# The release as users get it, checked on Linux x86_64 (.ci/run runs this):
# scripts/release.sh 0.0.0-ci builds every target; the tarballs match
# SHA256SUMS; the Linux binary needs no glibc newer than the documented floor;
# `npm install -g` of the packed launcher and linux-x64 packages, into a
# prefix of its own, gives an `agentfs` whose shim works and which passes
# exit statuses and signals through as the binary itself does; `cargo install
# --path cli` gives a working `agentfs`; the Homebrew formula is rendered with
# the checksums and is valid Ruby.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() { echo "FAILED packaging check: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }

version=0.0.0-ci
bash scripts/release.sh "$version"
floor=$(sed -n 's/^GLIBC_FLOOR=//p' scripts/release.sh)

tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

step "tarballs and checksums"
(cd dist && sha256sum --quiet -c SHA256SUMS) || fail "a tarball does not match SHA256SUMS"
tar -xzf "dist/agentfs-$version-x86_64-unknown-linux-gnu.tar.gz" -C "$tmp"
bin="$tmp/agentfs-$version-x86_64-unknown-linux-gnu/agentfs"
llvm_bin=$(dirname "$(ls /usr/lib/llvm-*/bin/llvm-objdump | tail -n 1)")
needed=$("$llvm_bin/llvm-objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
[ "$(printf '%s\n%s\n' "$needed" "$floor" | sort -V | tail -n 1)" = "$floor" ] || fail "the binary needs GLIBC_$needed > $floor"
grep -q "glibc $floor" README.md || fail "README.md does not document glibc $floor"
"$bin" --version | grep -q "^agentfs $version (" || fail "the release binary does not say its version: $("$bin" --version)"
echo "linux x86_64: highest GLIBC_ $needed (documented floor $floor)"

# The shim loaded from `agentfs` on PATH: a bind becomes a socket in run/.
shim_works() {
    local home="$tmp/home-$1"
    local out
    out=$(AGENTFS_HOME="$home" agentfs wrap --no-router -- python3 -c '
import glob, os, socket
s = socket.socket(); s.bind(("127.0.0.1", 8000)); s.listen()
socks = glob.glob(os.path.join(os.environ["AGENTFS_HOME"], "run", "*.sock"))
print("ok" if socks else "no socket in run/")')
    [ "$out" = ok ] || fail "$1: the wrapped program printed: $out"
}

# Exit statuses and signals through `agentfs` on PATH, as with the binary itself.
passes_through() {
    local status=0
    AGENTFS_HOME="$tmp/home-$1" agentfs wrap --no-router -- sh -c 'exit 7' || status=$?
    [ "$status" = 7 ] || fail "$1: exit 7 came out as $status"
    AGENTFS_HOME="$tmp/home-$1" agentfs wrap --no-router -- sleep 60 &
    local pid=$!
    for _ in $(seq 250); do [ -n "$(ls "$tmp/home-$1/run" 2>/dev/null)" ] && break; sleep 0.02; done
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    echo "$status"
}

step "npm install -g (a prefix of its own)"
npm_prefix="$tmp/npm"
npm install -g --silent --prefix "$npm_prefix" --no-audit --no-fund --omit=optional \
    "dist/npm/agentfs-$version.tgz" "dist/npm/agentfs-linux-x64-$version.tgz"
direct=$(PATH="$(dirname "$bin"):$PATH" passes_through direct)
(
    export PATH="$npm_prefix/bin:$PATH"
    [ "$(command -v agentfs)" = "$npm_prefix/bin/agentfs" ] || fail "npm put no agentfs on PATH"
    agentfs --version | grep -q "^agentfs $version (" || fail "npm's agentfs: $(agentfs --version)"
    shim_works npm
    via_npm=$(passes_through npm)
    [ "$via_npm" = "$direct" ] || fail "SIGTERM: the binary exits $direct, through npm $via_npm"
    echo "npm: the shim works; exit 7 and SIGTERM ($direct) pass through"
)

step "cargo install --path cli"
cargo install --quiet --locked --path cli --root "$tmp/cargo"
(
    export PATH="$tmp/cargo/bin:$PATH"
    agentfs --version | grep -q "^agentfs " || fail "cargo install's agentfs: $(agentfs --version)"
    shim_works cargo
    echo "cargo install: $(agentfs --version); the shim works"
)

step "Homebrew formula"
if [ -f dist/agentfs.rb ]; then
    ! grep -q '@[A-Z0-9_a-z-]*@' dist/agentfs.rb || fail "dist/agentfs.rb has unfilled placeholders"
    while read -r sum file; do
        grep -q "sha256 \"$sum\"" dist/agentfs.rb || fail "the formula lacks the checksum of $file"
        grep -q "/$file\"" dist/agentfs.rb || fail "the formula lacks the URL of $file"
    done <dist/SHA256SUMS
    ruby -c dist/agentfs.rb >/dev/null || fail "dist/agentfs.rb is not valid Ruby"
    echo "formula: rendered with $(wc -l <dist/SHA256SUMS) checksums; ruby -c passes"
else
    fail "no formula (the macOS targets were not built)"
fi
echo "packaging check passed ($root/dist)"
