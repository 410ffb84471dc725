#!/usr/bin/env bash
# All tests on a fresh Debian machine: install dependencies; build (CPU + CUDA objects when nvcc
# is present: the CUDA sources must compile for sm_80/sm_90 with -Werror) and run the suite;
# start a local Slurm cluster and run the distributed checks with srun and sbatch on it;
# build the CUDA sources against the host SIMT simulator and run every CUDA test on it; rebuild
# with AddressSanitizer + UBSan (simulator included) and run everything again; build the
# libFuzzer targets with clang and run each briefly; check formatting.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
source scripts/env.sh
J="$(nproc)"
stage_start=$SECONDS
stage() { # prints the time the previous stage took, then the next stage's title
  [ -n "${stage_name:-}" ] && echo "== $stage_name: $((SECONDS - stage_start)) s"
  stage_name="$1"
  stage_start=$SECONDS
  [ "$1" = done ] || echo "== $1"
}

stage "release build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$J"
ctest --test-dir build --output-on-failure -j"$J"

stage "Slurm: a local one-node cluster; srun and sbatch of the distributed checks"
bash scripts/ci_slurm.sh build/idoc

stage "CUDA on the host SIMT simulator: every CUDA test (ctest -L cuda)"
cmake -S . -B build-sim -G Ninja -DCMAKE_BUILD_TYPE=Release -DIDOC_CUDA_SIM=ON
mapfile -t cuda_tests < <(ctest --test-dir build-sim -N -L cuda |
  sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' | sed 's/_np2$//; s/^\(dist\|device\|cli\)_.*/idoc_cli/' | sort -u)
cmake --build build-sim -j"$J" --target "${cuda_tests[@]}"
ctest --test-dir build-sim --output-on-failure -j"$J" -L cuda

stage "AddressSanitizer + UndefinedBehaviorSanitizer build (with the simulator) and tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIDOC_SANITIZE=ON \
  -DIDOC_CUDA_SIM=ON
cmake --build build-asan -j"$J"
# test_cuda_train, test_cuda_plan, test_cuda_grpo and test_cuda_smoke (training steps through
# the trainers on the simulated GPU: up to ~15 min each under the sanitizers) run in the
# simulator stage above; the device model code they drive runs here in test_cuda_model.
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$J" \
  -E '^test_cuda_(train|plan|grpo|smoke)$'

stage "fuzzers (libFuzzer, clang)"
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIDOC_FUZZ=ON \
  -DIDOC_FUZZ_SECONDS="${IDOC_FUZZ_SECONDS:-20}"
cmake --build build-fuzz -j"$J"
ctest --test-dir build-fuzz --output-on-failure -L fuzz

stage "formatting"
bash scripts/format.sh --check
stage done
echo "== all tests passed in $SECONDS s"
