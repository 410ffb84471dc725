#!/usr/bin/env bash
# The one command to run on a machine with a GPU: configures a fresh CUDA build for sm_90
# (optional libraries that are missing switch off by themselves), builds it, runs every CUDA
# test (ctest -L cuda), `idoc bench kernels` and the device training check (the tiny model
# trained 20 steps with `idoc train` on the CPU and on the GPU, compared step by step:
# scripts/device_train_check.sh), then prints a summary: each test with its status and worst
# error, the worst error per kernel and dtype, the benchmark table and the training table.
#
#   scripts/gpu_check.sh [BUILD_DIR]      (default: build-gpu-check; CUDA_ARCH=90 to override)
#
# Exit status: 0 when everything built and every CUDA test passed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-gpu-check}
arch=${CUDA_ARCH:-90}
logs=$build/gpu_check_logs
jobs=$(nproc 2>/dev/null || echo 4)

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
command -v nvcc >/dev/null 2>&1 || { echo "gpu_check: nvcc not found (PATH or /usr/local/cuda/bin)" >&2; exit 1; }

rm -rf "$build"
mkdir -p "$logs"
echo "gpu_check: source $root, build $build, logs $logs"
{
  nvcc --version | tail -n 2
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; else echo "nvidia-smi: not found"; fi
} >"$logs/device.log" 2>&1 || true
grep -m1 -E "release|not found" "$logs/device.log" || true

# ---- configure and build ----------------------------------------------------------------------
echo "gpu_check: configuring (CMAKE_CUDA_ARCHITECTURES=$arch) -> $logs/configure.log"
if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DIDOC_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$logs/configure.log" 2>&1; then
  tail -n 30 "$logs/configure.log"
  echo "gpu_check: configure FAILED (see $logs/configure.log)" >&2
  exit 1
fi
grep "optional libraries found" "$logs/configure.log" || true
if ! grep -qE "optional libraries found:.*\bcuda\b" "$logs/configure.log"; then
  echo "gpu_check: CMake did not enable CUDA (see $logs/configure.log)" >&2
  exit 1
fi

echo "gpu_check: building with $jobs jobs -> $logs/build.log"
full_build=ok
if ! cmake --build "$build" -j "$jobs" >"$logs/build.log" 2>&1; then
  # Something unrelated to CUDA may not build here; the CUDA checks only need these targets.
  full_build=FAILED
  grep -m 20 -E "error|Error" "$logs/build.log" || true
  echo "gpu_check: full build failed; building only the CLI and the CUDA tests"
  targets=(idoc_cli)
  while IFS= read -r t; do targets+=("$t"); done < <(
    ctest --test-dir "$build" -N -L cuda | sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p')
  if ! cmake --build "$build" -j "$jobs" --target "${targets[@]}" >>"$logs/build.log" 2>&1; then
    tail -n 40 "$logs/build.log"
    echo "gpu_check: build of the CUDA targets FAILED (see $logs/build.log)" >&2
    exit 1
  fi
fi

# ---- tests and benchmark ----------------------------------------------------------------------
echo "gpu_check: ctest -L cuda -> $logs/ctest.log"
tests_rc=0
ctest --test-dir "$build" -L cuda --output-on-failure -V >"$logs/ctest.log" 2>&1 || tests_rc=$?
if ! grep -qE "Test +#[0-9]+:" "$logs/ctest.log"; then
  echo "gpu_check: no CUDA tests were found (is CUDA on in this build?)" >&2
  tests_rc=1
fi

echo "gpu_check: idoc bench kernels -> $logs/bench.log"
bench_rc=0
"$build/idoc" bench kernels >"$logs/bench.log" 2>&1 || bench_rc=$?
for suite in train generate; do # the whole model on the GPU (the default shape)
  "$build/idoc" bench $suite --device cuda 2>&1 | grep -E "^bench|median" >>"$logs/bench.log" ||
    bench_rc=1
done

echo "gpu_check: tiny training on cpu and cuda, 20 steps -> $logs/train.log"
train_rc=0
bash "$root/scripts/device_train_check.sh" "$build/idoc" "$build/device_train" 20 \
  >"$logs/train.log" 2>&1 || train_rc=$?

# ---- summary ----------------------------------------------------------------------------------
echo
echo "================ gpu_check summary ================"
grep -m1 -E "^[0-9]+: device:" "$logs/ctest.log" | sed 's/^[0-9]*: //' || true
echo "full build: $full_build"
echo
# ctest -V prefixes each line of a test's output with its number; CASE lines are
#   CASE <kernel> <dtype> <shape...> <output> rel_err=<e> tol=<t> ok|FAIL
awk '
  function val(key,   i) { for (i = 1; i <= NF; i++) if (index($i, key "=") == 1) return substr($i, length(key) + 2) + 0; return -1 }
  /Test +#[0-9]+: / {
    line = $0; sub(/.*Test +#/, "", line); num = line + 0
    sub(/^[0-9]+: +/, "", line); split(line, w, " "); name[num] = w[1]
    st = ($0 ~ /Passed/) ? "pass" : "FAIL"
    if ($0 ~ /Test +#[0-9]+: .*(Passed|Failed|Timeout|Exception|Not Run)/) status[num] = st
    if (!(num in seen)) { seen[num] = 1; order[++n] = num }
  }
  /^[0-9]+: SKIP:/ { split($1, p, ":"); skipped[p[1] + 0] = 1 }
  /^[0-9]+: CASE / {
    split($1, p, ":"); t = p[1] + 0
    e = val("rel_err"); tl = val("tol"); r = tl > 0 ? e / tl : 0
    if (!(t in worst) || r > worst[t]) { worst[t] = r; werr[t] = e; wcase[t] = $3 " " $4 }
    k = $3 " " $4
    if (!(k in kerr) || e > kerr[k]) { kerr[k] = e; ktol[k] = tl }
    if (!(k in kseen)) { kseen[k] = 1; korder[++nk] = k }
    ncase[t]++; if ($NF != "ok") nfail[t]++
  }
  END {
    printf "%-28s %-8s %7s %12s  %s\n", "test", "status", "cases", "worst_err", "(kernel dtype, err/tol)"
    for (i = 1; i <= n; i++) {
      t = order[i]; s = (t in status) ? status[t] : "FAIL"
      if (s == "pass" && (t in skipped) && !(t in ncase)) s = "skipped"
      if (t in ncase)
        printf "%-28s %-8s %7d %12.3e  (%s, %.3f)\n", name[t], s, ncase[t], werr[t], wcase[t], worst[t]
      else
        printf "%-28s %-8s %7d %12s\n", name[t], s, 0, "-"
    }
    if (nk) {
      printf "\n%-22s %-5s %12s %8s\n", "kernel", "dtype", "worst_err", "tol"
      for (i = 1; i <= nk; i++) { split(korder[i], kk, " "); printf "%-22s %-5s %12.3e %8.0e\n", kk[1], kk[2], kerr[korder[i]], ktol[korder[i]] }
    }
  }' "$logs/ctest.log"
echo
echo "benchmark (idoc bench kernels, idoc bench train|generate --device cuda):"
cat "$logs/bench.log"
echo
echo "training (scripts/device_train_check.sh):"
sed -n '/^device training/,$p' "$logs/train.log"
echo
echo "logs: $logs/{device,configure,build,ctest,bench,train}.log"
status=0
if [ "$tests_rc" -ne 0 ]; then
  echo "gpu_check: CUDA tests FAILED (ctest exit $tests_rc; details in $logs/ctest.log)"
  status=1
fi
if grep -qE "^[0-9]+: SKIP: no CUDA device" "$logs/ctest.log"; then
  echo "gpu_check: no GPU is visible to the CUDA runtime: the CUDA tests SKIPPED (see $logs/device.log)"
  status=1
fi
if [ "$bench_rc" -ne 0 ]; then
  echo "gpu_check: benchmark FAILED (exit $bench_rc; see $logs/bench.log)"
  status=1
fi
if [ "$train_rc" -ne 0 ]; then
  echo "gpu_check: device training check FAILED (see $logs/train.log)"
  status=1
fi
[ "$status" -eq 0 ] && echo "gpu_check: all CUDA tests passed"
exit "$status"
