#!/usr/bin/env bash
# A distribution's package build, as a build farm runs it (docs/packaging.md):
#   - the source: the committed tree (git archive of HEAD) with its crates
#     vendored by `cargo xtask vendor`;
#   - no network: the build runs in a network namespace with no interface
#     (unshare -n), with an empty CARGO_HOME, so the vendored crates are all
#     it has;
#   - no rustup: the toolchain's own bin first on PATH, RUSTUP_* unset;
#   - another cross toolchain: wrapper scripts named s390x-test-linux-gnu-*
#     call Debian's, whose own names are hidden from PATH; the kernel and the
#     (glibc) agent both link through them, the agent's linker following
#     kernel.cross_compile.
# The kernel goes through the compile cache, whose entries for the
# wrappers' fixed content survive from one run to the next.
#
# Usage: ci/packager.sh WORKDIR   (WORKDIR is replaced)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${1:?usage: ci/packager.sh WORKDIR}")
step() { printf '[packager] %s\n' "$*" >&2; }
fail() {
    printf '[packager] FAILED: %s\n' "$*" >&2
    exit 1
}

rm -rf "$work"
mkdir -p "$work"
src=$work/src

step "source tree: git archive of HEAD, then cargo xtask vendor in it"
git -C "$root" archive --prefix=src/ HEAD | tar -x -C "$work"
(cd "$src" && cargo xtask vendor)
[ -d "$src/vendor" ] || fail "cargo xtask vendor wrote no vendor/"
step "vendor/: $(du -sh "$src/vendor" | cut -f1), $(find "$src/vendor" -mindepth 1 -maxdepth 1 -type d | wc -l) crates"

step "cross toolchain s390x-test-linux-gnu-*: wrappers around Debian's s390x-linux-gnu-*"
tools=$work/tools
mkdir -p "$tools"
for real in /usr/bin/s390x-linux-gnu-*; do
    name=$(basename "$real")
    printf '#!/bin/sh\nexec %s "$@"\n' "$real" >"$tools/s390x-test-linux-gnu-${name#s390x-linux-gnu-}"
done
chmod 755 "$tools"/*

step "PATH: the toolchain's bin, the wrappers, the system's commands but Debian's s390x ones"
sysroot=$(rustc --print sysroot)
hidden=$work/path
mkdir -p "$hidden"
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do
        name=$(basename "$f")
        case $name in s390x-linux-gnu-* | s390x-linux-musl-*) continue ;; esac
        [ -e "$hidden/$name" ] || ln -s "$f" "$hidden/$name"
    done
done
path=$sysroot/bin:$tools:$hidden
for gone in rustup s390x-linux-gnu-gcc s390x-linux-musl-gcc; do
    if PATH=$path command -v "$gone" >/dev/null; then fail "$gone is still on PATH"; fi
done

# As root, a plain network namespace; otherwise one of a user namespace.
net=(unshare -n)
[ "$(id -u)" = 0 ] || net=(unshare -rn)
mkdir -p "$work/cargo-home"
step "dist --offline in a network namespace with no interface"
start=$(date +%s)
(
    cd "$src"
    "${net[@]}" env -u RUSTUP_TOOLCHAIN -u RUSTUP_HOME \
        PATH="$path" CARGO_HOME="$work/cargo-home" sh -c '
        # Only the loopback, and it down: no route anywhere.
        ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | grep -vx lo || true)
        [ -z "$ifaces" ] || { echo "interfaces in the namespace: $ifaces" >&2; exit 1; }
        exec cargo xtask dist --offline --no-provision \
            --set kernel.cross_compile=s390x-test-linux-gnu- \
            --out-dir "$0"' "$work/dist"
) || fail "the offline build failed"
secs=$(($(date +%s) - start))

manifest=$work/dist/manifest.json
[ -s "$work/dist/zfcpdump.image" ] || fail "no zfcpdump.image"
[ -s "$work/dist/zfcpdump.rd" ] || fail "no zfcpdump.rd"
grep -q '"cross_compile": "s390x-test-linux-gnu-"' "$manifest" || fail "the manifest names another prefix"
grep -q '"target": "s390x-unknown-linux-gnu"' "$manifest" || fail "the agent is not the glibc one"
log=$(find "$src/target/zfcpdump/kernel" -name make.log | head -1)
grep -q 'CROSS_COMPILE=s390x-test-linux-gnu-' "$log" || fail "make did not run with the wrappers ($log)"
step "built with no network in ${secs}s: $(ls -l "$work/dist" | tail -n +2 | awk '{print $9" "$5}' | tr '\n' ' ')"
if cmp -s "$work/dist/zfcpdump.image" "$root/dist/default/zfcpdump.image"; then
    step "zfcpdump.image is bit-identical to dist/default's"
else
    step "zfcpdump.image differs from dist/default's (another source path and compiler name)"
fi
