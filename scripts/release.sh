#!/usr/bin/env bash
# scripts/release.sh VERSION — the release artifacts, in dist/ (nothing is
# published from here; docs/releasing.md says how):
#   agentfs-VERSION-TARGET.tar.gz  one stripped `agentfs` (the shim embedded), README, licenses
#   SHA256SUMS                     of the tarballs
#   npm/*.tgz                      `npm pack` of the launcher package `agentfs` and of @agentfs/<os>-<cpu>
#   agentfs.rb                     the Homebrew formula (packaging/agentfs.rb.in) with URLs and checksums
# Targets: x86_64/aarch64-unknown-linux-gnu and aarch64/x86_64-apple-darwin,
# all linked by cargo-zigbuild (installed here if missing, as the macOS
# cross-check does); the Linux ones against glibc $GLIBC_FLOOR, so any
# distribution with that glibc or newer loads them — checked on the binary's
# and the shim's versioned symbols. AGENTFS_RELEASE_TARGETS="t1 t2" builds
# fewer; AGENTFS_RELEASE_BASE_URL is where the tarballs will be downloaded from.
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC_FLOOR=2.28
all_targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu aarch64-apple-darwin x86_64-apple-darwin)

fail() { echo "release: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }

version=${1:-}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || fail "usage: scripts/release.sh VERSION (semver: 1.2.3 or 1.2.3-rc.1); got '${version}'"
read -r -a targets <<<"${AGENTFS_RELEASE_TARGETS:-${all_targets[*]}}"
for t in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $t "* ]] || fail "unknown target $t (known: ${all_targets[*]})"
done
base_url=${AGENTFS_RELEASE_BASE_URL:-https://github.com/agentfs/agentfs/releases/download/v$version}
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ "$crate_version" = "$version" ] || echo "release: note: Cargo.toml says $crate_version; the binaries say $version"

step "tools"
rustup target add "${targets[@]}" >/dev/null || fail "cannot add the Rust targets ${targets[*]}"
if ! python3 -m ziglang version >/dev/null 2>&1; then
    python3 -m pip install --quiet ziglang >/dev/null 2>&1 ||
        python3 -m pip install --quiet --break-system-packages ziglang >/dev/null || fail "cannot install ziglang"
fi
command -v cargo-zigbuild >/dev/null || cargo install --locked --quiet cargo-zigbuild || fail "cannot install cargo-zigbuild"
llvm_bin=$(dirname "$(ls /usr/lib/llvm-*/bin/llvm-strip 2>/dev/null | tail -n 1)")
[ -x "$llvm_bin/llvm-strip" ] || fail "llvm-strip is not installed (Debian: llvm)"
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are needed for the npm packages"

commit=$(git rev-parse --short=12 HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || commit="$commit+dirty"
export AGENTFS_COMMIT=$commit AGENTFS_RELEASE_VERSION=$version

# The highest GLIBC_x.y a Linux ELF file needs.
glibc_needed() {
    "$llvm_bin/llvm-objdump" -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1
}

rm -rf dist
mkdir -p dist/npm
built=()
for t in "${targets[@]}"; do
    step "$t"
    zig_target=$t
    [[ $t == *-linux-gnu ]] && zig_target="$t.$GLIBC_FLOOR"
    lib=libagentfs_shim.so
    [[ $t == *-apple-darwin ]] && lib=libagentfs_shim.dylib
    cargo zigbuild --quiet --release --locked -p agentfs-shim --target "$zig_target" 2> >(grep -v -e xcrun -e SDK >&2)
    shim="$PWD/target/$t/release/$lib"
    AGENTFS_SHIM_PREBUILT="$shim" cargo zigbuild --quiet --release --locked -p agentfs --target "$zig_target" \
        2> >(grep -v -e xcrun -e SDK >&2)
    name="agentfs-$version-$t"
    mkdir -p "dist/$name"
    cp "target/$t/release/agentfs" "dist/$name/agentfs"
    # Mach-O binaries stay as linked: zig signs them (ad hoc), and stripping afterwards would break the signature.
    if [[ $t == *-linux-gnu ]]; then
        "$llvm_bin/llvm-strip" "dist/$name/agentfs"
        for f in "dist/$name/agentfs" "$shim"; do
            needed=$(glibc_needed "$f")
            [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_FLOOR" | sort -V | tail -n 1)" = "$GLIBC_FLOOR" ] ||
                fail "$f needs GLIBC_$needed, newer than the documented $GLIBC_FLOOR"
            echo "$(basename "$f"): highest GLIBC_ symbol version $needed (floor $GLIBC_FLOOR)"
        done
    fi
    cp README.md LICENSE-MIT LICENSE-APACHE "dist/$name/"
    tar -czf "dist/$name.tar.gz" -C dist "$name"
    built+=("$t=$PWD/dist/$name/agentfs")
done

step "checksums, npm packages, Homebrew formula"
(cd dist && sha256sum -- *.tar.gz >SHA256SUMS)
node npm/stage.js "$version" dist/npm-stage "${built[@]}"
for dir in dist/npm-stage/*/; do
    (cd dist/npm && npm pack --silent "../../$dir" >/dev/null)
done
rm -rf dist/npm-stage

if [ ${#targets[@]} -eq ${#all_targets[@]} ]; then
    formula=$(sed "s|@VERSION@|$version|g" packaging/agentfs.rb.in)
    for t in "${all_targets[@]}"; do
        sum=$(awk -v f="agentfs-$version-$t.tar.gz" '$2 == f { print $1 }' dist/SHA256SUMS)
        formula=${formula//@URL_$t@/$base_url/agentfs-$version-$t.tar.gz}
        formula=${formula//@SHA256_$t@/$sum}
    done
    printf '%s\n' "$formula" >dist/agentfs.rb
else
    echo "release: the Homebrew formula needs all four targets; not written"
fi
ls -l dist dist/npm
