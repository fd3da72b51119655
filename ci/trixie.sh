#!/usr/bin/env bash
# The default profile built by Debian 13's own toolchain (docs/packaging.md):
# a Debian 13 "trixie" chroot that holds only Debian's packages (rustc and
# cargo 1.85, the s390x std's rlibs, gcc 14 for s390x and its C library,
# the kernel build tools), no rustup and no crates cache, builds a vendored
# source tree with `cargo xtask dist --offline`, in a network namespace
# with no interface.
#
# The chroot is made once per machine (debootstrap, then apt) and cached
# outside the clone, with its compile cache inside it, so that its kernel
# compile is warm after the first run.
#
# Usage: ci/trixie.sh SRC OUT
#   SRC  a source tree with its crates vendored (`cargo xtask vendor`;
#        ci/packager.sh leaves one)
#   OUT  gets dist's files (zfcpdump.image, zfcpdump.rd, manifest.json) and
#        the kernel's vmlinux, for `cargo xtask e2e --from OUT`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$(realpath "${1:?usage: ci/trixie.sh SRC OUT}")
out=$(realpath -m "${2:?usage: ci/trixie.sh SRC OUT}")
step() { printf '[trixie] %s\n' "$*" >&2; }
fail() {
    printf '[trixie] FAILED: %s\n' "$*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot, mounts)"
[ -f "$src/.cargo/config.toml" ] && grep -q 'zfcpdump vendored crates' "$src/.cargo/config.toml" ||
    fail "$src is not a vendored tree: run cargo xtask vendor in it"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/zfcpdump/chroot
chroot=$cache/trixie
# The chroot's contents; a change makes a new one.
packages="rustc cargo gcc-s390x-linux-gnu libc6-dev-s390x-cross gcc libc6-dev make flex bison bc
libelf-dev libssl-dev cpio xz-utils zstd ccache ca-certificates"
recipe="trixie minbase; $(echo $packages); libstd-rust-dev:s390x rlibs; v1"
# The host's Debian mirror (the registry this machine reaches).
mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}

in_chroot() { chroot "$1" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${@:2}"; }

if [ "$(cat "$chroot/.recipe" 2>/dev/null)" != "$recipe" ]; then
    step "making the chroot ($mirror): debootstrap, then Debian 13's toolchain"
    new=$cache/trixie.new
    rm -rf "$new"
    mkdir -p "$cache"
    t=$(date +%s)
    debootstrap --variant=minbase trixie "$new" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        fail "debootstrap failed; its log: $cache/debootstrap.log"
    step "debootstrap: $(($(date +%s) - t))s"
    t=$(date +%s)
    in_chroot "$new" dpkg --add-architecture s390x
    in_chroot "$new" apt-get -q update >/dev/null
    # shellcheck disable=SC2086
    in_chroot "$new" apt-get -q install -y --no-install-recommends $packages >"$cache/apt.log" 2>&1 ||
        fail "apt-get install failed; its log: $cache/apt.log"
    # The s390x std: its rlibs only. Installing the package would pull its
    # s390x runtime closure, some of which the registry does not serve.
    version=$(in_chroot "$new" dpkg-query -W -f='${Version}' rustc)
    in_chroot "$new" sh -c "cd /tmp && apt-get -q download libstd-rust-dev:s390x=$version" >>"$cache/apt.log" 2>&1 ||
        fail "cannot download libstd-rust-dev:s390x $version (the version of rustc); log: $cache/apt.log"
    in_chroot "$new" sh -c 'dpkg -x /tmp/libstd-rust-dev_*_s390x.deb /tmp/std &&
        cp -a /tmp/std/usr/lib/rustlib/s390x-unknown-linux-gnu /usr/lib/rustlib/ &&
        rm -rf /tmp/std /tmp/*.deb && apt-get clean'
    step "apt: $(($(date +%s) - t))s"
    echo "$recipe" >"$new/.recipe"
    rm -rf "$chroot"
    mv "$new" "$chroot"
fi
rustc_v=$(in_chroot "$chroot" rustc -V)
gcc_v=$(in_chroot "$chroot" s390x-linux-gnu-gcc --version | head -1)
libdir=$(in_chroot "$chroot" rustc --print target-libdir --target s390x-unknown-linux-gnu)
ls "$chroot$libdir"/libstd-*.rlib >/dev/null 2>&1 || fail "no s390x std in the chroot ($libdir)"
if in_chroot "$chroot" sh -c 'command -v rustup' >/dev/null; then fail "rustup is in the chroot"; fi
step "toolchain: $rustc_v; $gcc_v"

step "the source tree, without its target/, into /build/src"
rm -rf "$chroot/build"
mkdir -p "$chroot/build/src"
tar -C "$src" --exclude=./target --exclude=./dist -c . | tar -C "$chroot/build/src" -x
# The kernel source the profile names: an input, not a package of the chroot.
tarball=$(sed -n 's/^source = { tarball = "\(.*\)" }$/\1/p' "$chroot/build/src/profiles/default.toml")
[ -f "$tarball" ] || fail "the default profile's kernel source $tarball is not on the host"
mkdir -p "$chroot$(dirname "$tarball")"
ln -f "$tarball" "$chroot$tarball" 2>/dev/null || cp "$tarball" "$chroot$tarball"

step "cargo xtask dist --offline, in the chroot, in a network namespace with no interface"
t=$(date +%s)
unshare -m -n sh -c '
    set -e
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | grep -vx lo || true)
    [ -z "$ifaces" ] || { echo "interfaces in the namespace: $ifaces" >&2; exit 1; }
    exec chroot "$1" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 \
        sh -c "cd /build/src && cargo xtask dist --offline --no-provision --out-dir /build/dist"
' sh "$chroot" || fail "the build in the chroot failed"
secs=$(($(date +%s) - t))

rm -rf "$out"
mkdir -p "$out"
cp "$chroot"/build/dist/* "$out/"
vmlinux=$(find "$chroot/build/src/target/zfcpdump/kernel/images" -name vmlinux | head -1)
[ -n "$vmlinux" ] || fail "no vmlinux in the chroot's kernel stage"
cp "$vmlinux" "$out/vmlinux"
manifest=$out/manifest.json
grep -q "\"rustc\": \"$rustc_v\"" "$manifest" || fail "the manifest does not record $rustc_v"
grep -q '"target": "s390x-unknown-linux-gnu"' "$manifest" || fail "the agent is not the glibc one"
step "built in ${secs}s with $rustc_v: $(ls -l "$out" | tail -n +2 | awk '{print $9" "$5}' | tr '\n' ' ')"
