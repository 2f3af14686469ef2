#!/usr/bin/env bash
# Installs the Debian packages CellAudit builds and tests with, where any is missing:
# the OpenCL loader and headers, PoCL (an OpenCL CPU device), oclgrind (a kernel checker) and
# OpenBLAS (the CPU backend's matrix products), libzip (archives) and HDF5 (Keras files).
# Needs a Swift 6 toolchain already on PATH (https://www.swift.org/install/).
set -euo pipefail
packages=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd oclgrind pkg-config libopenblas-dev liblapacke-dev libssl-dev libzip-dev libhdf5-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "error: swift is not on PATH; install a Swift 6 toolchain" >&2; exit 1; }
