#!/usr/bin/env bash
# Trains the tiny model with `idoc train` on the CPU and on the CUDA device and compares them
# step by step: the tiny stage-2 SFT (CoT + heatmap MSE, 2 micro-batches per step) for STEPS
# steps, the losses within 1e-4 relative and the gradient norms within 1e-3; then a short tiny
# GRPO on both, whose rollouts are compared (on a real GPU the logits differ in the last bits,
# so a sampled token may differ: reported, not failed). Prints a table; scripts/gpu_check.sh runs
# it on a machine with a GPU (with the simulator build it runs too, slowly).
#
#   bash scripts/device_train_check.sh IDOC WORKDIR [STEPS]      (STEPS default 20)
#
# Exit status: 0 when both SFT runs finished and agree.
set -uo pipefail
cd "$(dirname "$0")/.."
IDOC=$(realpath "${1:?path to idoc}")
WORK=${2:?work directory}
STEPS=${3:-20}
GSTEPS=$(((STEPS + 3) / 4))
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
CMP="$PY scripts/dist_compare.py"
if ! "$IDOC" train --help-keys >/dev/null 2>&1; then # a build without libyaml / HDF5 / ...
  echo "device_train_check: SKIP: this idoc has no trainer (see its build's optional libraries)"
  exit 0
fi
rm -rf "$WORK" && mkdir -p "$WORK" && WORK=$(realpath "$WORK")
"$IDOC" data synth --out "$WORK/data" --train 16 --val 0 --test 3 --size 112 --seed 5 >/dev/null 2>&1 ||
  { echo "device_train_check: data synth failed" >&2; exit 1; }
SFT=(train configs/tiny/dist_sft.yaml "dataset=$WORK/data/train.h5" plot_loss=false
  "max_steps=$STEPS" save_steps=0)
GRPO=(train configs/tiny/dist_grpo.yaml "dataset=$WORK/data/train.h5" plot_loss=false
  "max_steps=$GSTEPS" save_steps=0 per_device_train_batch_size=2)
fails=0
declare -A secs
run() { # run NAME DEVICE ARGS...
  local name=$1 dev=$2 t0=$SECONDS
  shift 2
  if ! "$IDOC" "$@" "device=$dev" "output_dir=$WORK/$name" >"$WORK/$name.log" 2>&1; then
    echo "device_train_check: $name failed (see $WORK/$name.log):" >&2
    tail -n 5 "$WORK/$name.log" >&2
    fails=$((fails + 1))
  fi
  secs[$name]=$((SECONDS - t0))
}
run sft_cpu cpu "${SFT[@]}"
run sft_cuda cuda "${SFT[@]}"
run grpo_cpu cpu "${GRPO[@]}"
run grpo_cuda cuda "${GRPO[@]}"

first_last() { # first -> last logged value of a field
  $PY - "$1/trainer_log.jsonl" "$2" <<'EOF'
import json, sys
v = [r[sys.argv[2]] for r in map(json.loads, open(sys.argv[1])) if sys.argv[2] in r]
print(f"{v[0]:.6g} -> {v[-1]:.6g}" if v else "-")
EOF
}
echo
printf "%-34s %-26s %-26s %s\n" "device training ($STEPS SFT steps)" "cpu" "cuda" "check"
for f in loss grad_norm; do
  tol=1e-4
  [ $f = grad_norm ] && tol=1e-3
  if out=$($CMP losses --field $f --rtol $tol "$WORK/sft_cpu" "$WORK/sft_cuda" 2>&1); then
    verdict="ok (${out#*difference }"
  else
    verdict="FAIL: $out"
    fails=$((fails + 1))
  fi
  printf "%-34s %-26s %-26s %s\n" "SFT stage 2: $f" "$(first_last "$WORK/sft_cpu" $f)" \
    "$(first_last "$WORK/sft_cuda" $f)" "${verdict%% at step*})"
done
for f in reward loss; do
  out=$($CMP losses --field $f --rtol 1e-4 "$WORK/grpo_cpu" "$WORK/grpo_cuda" 2>&1)
  printf "%-34s %-26s %-26s %s\n" "GRPO ($GSTEPS steps): $f" "$(first_last "$WORK/grpo_cpu" $f)" \
    "$(first_last "$WORK/grpo_cuda" $f)" "report: ${out#*difference }"
done
printf "%-34s %-26s %-26s\n" "seconds (SFT, GRPO)" "${secs[sft_cpu]}, ${secs[grpo_cpu]}" \
  "${secs[sft_cuda]}, ${secs[grpo_cuda]}"
grep -m1 "^device:" "$WORK/sft_cuda.log" || true
[ $fails -eq 0 ] && echo "device_train_check: ok" || echo "device_train_check: $fails FAILED"
[ $fails -eq 0 ]
