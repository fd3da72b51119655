#!/usr/bin/env bash
# Release pipeline entry point: builds dist for a profile (default: the
# default profile), proves it reproduces with a clean second build, and packs
# the artifacts, the manifest and a SHA256SUMS file into one tarball.
#
#   ci/release.sh [PROFILE] [OUTDIR]     (OUTDIR default: target/release-artifacts)
#
# Extra arguments for `cargo xtask dist` can be given in XTASK_DIST_ARGS,
# e.g. XTASK_DIST_ARGS="--offline --no-provision".
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-default}"
out="${2:-target/release-artifacts}"
name="$(basename "$profile" .toml)"
epoch="${SOURCE_DATE_EPOCH:-1704067200}"

# shellcheck disable=SC2086
cargo xtask dist --profile "$profile" --check-reproducible ${XTASK_DIST_ARGS:-}

dist="dist/$name"
release="$(jq -r .kernel.release "$dist/manifest.json" 2>/dev/null || sed -n 's/.*"release": "\(.*\)".*/\1/p' "$dist/manifest.json" | head -n1)"
stem="zfcpdump-$name-$release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/$stem" "$out"
cp "$dist/zfcpdump.image" "$dist/zfcpdump.rd" "$dist/manifest.json" "$work/$stem/"
(cd "$work/$stem" && sha256sum zfcpdump.image zfcpdump.rd manifest.json > SHA256SUMS)

# A reproducible tarball: sorted names, fixed owner and time, no gzip name/time.
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    --mode='u=rwX,go=rX' -C "$work" -cf - "$stem" | gzip -n -9 > "$work/$stem.tar.gz"
mv "$work/$stem.tar.gz" "$out/$stem.tar.gz"
(cd "$out" && sha256sum "$stem.tar.gz" > "$stem.tar.gz.sha256")
echo "release: $out/$stem.tar.gz"
