#!/usr/bin/env bash
# Installs the Debian packages ImageDoctor.c builds and tests with. The CUDA toolkit (nvcc,
# cuBLAS) is expected to be installed already; without it the CUDA backend is simply off.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git python3 python3-venv
      libopenblas-dev libhdf5-dev hdf5-tools libcjson-dev libpcre2-dev libutf8proc-dev
      libpng-dev libjpeg-dev libyaml-dev libprotobuf-c-dev protobuf-c-compiler
      libopenmpi-dev openmpi-bin clang libclang-rt-14-dev clang-format python3-h5py
      gnuplot-nox)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
