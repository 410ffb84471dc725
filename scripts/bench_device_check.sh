#!/usr/bin/env bash
# `idoc bench train` and `idoc bench generate` on the CPU and with --device cuda, same shape:
# the training losses agree within 1e-5 relative at every step and greedy generation gives the
# same tokens. Skips (exit 0) when no CUDA device is visible.
#
#   bash scripts/bench_device_check.sh IDOC [shape options...]
set -uo pipefail
IDOC=${1:?path to idoc}
shift
if ! out=$("$IDOC" bench train "$@" --device cuda 2>&1); then
  if grep -q "no CUDA device is visible" <<<"$out"; then
    echo "SKIP: no CUDA device is visible"
    exit 0
  fi
  echo "$out" >&2
  exit 1
fi
cpu=$("$IDOC" bench train "$@" --device cpu 2>&1) || { echo "$cpu" >&2; exit 1; }
grep -E "fp32, cuda|^device:" <<<"$out"
fails=0
paste <(grep "^step" <<<"$cpu" | awk '{print $4}') <(grep "^step" <<<"$out" | awk '{print $4}') |
  awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r; n++; print "  step " n - 1 ": cpu " $1 " cuda " $2}
       END {printf "train: %d steps, worst relative difference %.3g\n", n, w; exit !(n >= 2 && w <= 1e-5)}' ||
  fails=$((fails + 1))
g_cpu=$("$IDOC" bench generate "$@" --device cpu 2>&1 | grep "first tokens") || fails=$((fails + 1))
g_dev=$("$IDOC" bench generate "$@" --device cuda 2>&1 | grep "first tokens") || fails=$((fails + 1))
echo "generate cpu:  $g_cpu"
echo "generate cuda: $g_dev"
[ -n "$g_cpu" ] && [ "$g_cpu" = "$g_dev" ] || { echo "generate: the tokens differ" && fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "bench on the device: ok" || echo "bench on the device: FAILED"
[ $fails -eq 0 ]
