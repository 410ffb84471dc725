#!/usr/bin/env bash
# Fails unless every kernel of kernels/ops.h has a CUDA implementation registered in
# kernels/cuda/table.cu and is called by a CUDA parity test (tests/unit/test_cuda_parity*.c),
# so the CUDA backend and its tests cannot silently fall behind the kernel list.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t kernels < <(sed -n 's/^ *X(\([a-z0-9_]*\),.*/\1/p' kernels/ops.h)
[ "${#kernels[@]}" -gt 0 ] || { echo "no kernels found in kernels/ops.h" >&2; exit 1; }
bad=0
for k in "${kernels[@]}"; do
  if ! grep -qE "^ *SET\($k\);" kernels/cuda/table.cu; then
    echo "kernel $k: no CUDA implementation registered in kernels/cuda/table.cu"
    bad=1
  fi
  if ! grep -q "IDOC_K(GPU, $k)" tests/unit/test_cuda_parity*.c; then
    echo "kernel $k: no CUDA parity test calls it (tests/unit/test_cuda_parity*.c)"
    bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "all ${#kernels[@]} kernels have a CUDA implementation and a parity test"
exit "$bad"
