#!/usr/bin/env bash
# All tests on a fresh Debian machine: install dependencies; build (CPU + CUDA objects when nvcc
# is present) and run the suite; rebuild with AddressSanitizer + UBSan and run it again; build
# the libFuzzer targets with clang and run each briefly; check formatting.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
source scripts/env.sh
J="$(nproc)"

echo "== release build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$J"
ctest --test-dir build --output-on-failure -j"$J"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIDOC_SANITIZE=ON
cmake --build build-asan -j"$J"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$J"

echo "== fuzzers (libFuzzer, clang)"
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIDOC_FUZZ=ON \
  -DIDOC_FUZZ_SECONDS="${IDOC_FUZZ_SECONDS:-20}"
cmake --build build-fuzz -j"$J"
ctest --test-dir build-fuzz --output-on-failure -L fuzz

echo "== formatting"
bash scripts/format.sh --check
