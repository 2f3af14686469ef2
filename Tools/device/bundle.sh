#!/usr/bin/env bash
# Builds a self-contained CellAudit for a bare GPU machine (no Swift, no Debian packages, no
# network): a release binary with the Swift runtime linked statically, and every shared library
# it needs that such a machine lacks, in one folder (issue 31, item 3):
#   bash Tools/device/bundle.sh [DIR]        # default DIR: dist/cellaudit-bundle (git ignores dist/)
# DIR/bin/cellaudit, DIR/lib/*.so* (the OpenCL ICD loader, OpenBLAS, LAPACKE, libcrypto, libzip,
# HDF5 and what they pull in), DIR/MANIFEST (sha256 of every file). Libraries every glibc system
# has (libc, libm, libdl, libpthread, librt, the dynamic loader) stay out. The folder holds about
# 134 MiB (the static Swift runtime with Foundation's ICU data is 66 MiB of it, OpenBLAS with
# every CPU's kernels 36 MiB), so what travels is DIR.tar.gz (about 50 MiB), which must stay
# under the 64 MiB a device call carries: the script says its size and fails above it. Carry the
# folder that holds it (`dist/device`); gpu-check.sh unpacks it where it runs.
# Check it from a clean folder: bash Tools/device/gpu-check.sh --local dist/device/cellaudit-bundle.tar.gz
# runs it on PoCL with nothing but the bundle's lib/ on LD_LIBRARY_PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$root/dist/cellaudit-bundle}"
cd "$root"
bash Tools/install-deps.sh >&2
swift build -c release --static-swift-stdlib --product cellaudit >&2
bin="$(swift build -c release --static-swift-stdlib --show-bin-path)/cellaudit"
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
cp "$bin" "$dest/bin/cellaudit"
strip "$dest/bin/cellaudit" 2>/dev/null || true
# Every shared library the binary resolves here, but the C library's own.
base='^(linux-vdso|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|ld-linux|libresolv\.so|libutil\.so)'
missing=$(ldd "$dest/bin/cellaudit" | awk '/not found/ { print $1 }')
if [[ -n "$missing" ]]; then echo "error: the binary needs libraries this machine lacks: $missing" >&2; exit 1; fi
ldd "$dest/bin/cellaudit" | awk '$3 ~ /^\// { print $1, $3 }' | while read -r name path; do
    if [[ "$name" =~ $base ]]; then continue; fi
    cp -L "$path" "$dest/lib/$name"
done
# OpenBLAS resolves its kernels through its own soname links: keep the names ldd printed.
(cd "$dest" && find bin lib -type f -print0 | sort -z | xargs -0 sha256sum > MANIFEST)
size=$(du -sm "$dest" | cut -f1)
mkdir -p "$root/dist/device"
archive="$root/dist/device/$(basename "$dest").tar.gz"
tar -C "$(dirname "$dest")" -czf "$archive" "$(basename "$dest")"
packed=$(( $(stat -c %s "$archive") / 1048576 ))
echo "bundle: $dest, ${size} MiB, $(ls "$dest/lib" | wc -l) libraries: $(ls "$dest/lib" | tr '\n' ' ')" >&2
echo "archive: $archive, ${packed} MiB (carry dist/device)" >&2
if (( packed >= 64 )); then echo "error: the archive is ${packed} MiB; a device call carries at most 64 MiB" >&2; exit 1; fi
