#!/usr/bin/env bash
# bf16 training on the CUDA device (the simulator in CI), checked against the f32 CPU run:
#   - the tiny stage-2 SFT (CoT + heatmap MSE) with bf16: true: losses within 2e-2 relative of
#     the CPU's f32 losses at every step, yet not equal to them (bf16 is in effect), and falling;
#   - its checkpoint holds the fp32 masters (master.NAME in optimizer.safetensors), and a run
#     resumed from the mid-run checkpoint logs bitwise the uninterrupted run's losses, gradient
#     norms and final weights;
#   - the tiny GRPO with bf16 (rollouts, the decoder's maps for the rewards, the reference
#     model, updates) runs and its loss stays finite.
#
#   bash scripts/bf16_checks.sh IDOC WORKDIR [STEPS]      (STEPS default 6, even)
set -uo pipefail
cd "$(dirname "$0")/.."
IDOC=$(realpath "${1:?path to idoc}")
WORK=${2:?work directory}
STEPS=${3:-6}
HALF=$((STEPS / 2))
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
CMP="$PY scripts/dist_compare.py"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
rm -rf "$WORK" && mkdir -p "$WORK" && WORK=$(realpath "$WORK")
"$IDOC" data synth --out "$WORK/data" --train 16 --val 0 --test 3 --size 112 --seed 5 >/dev/null 2>&1 ||
  { echo "bf16_checks: data synth failed" >&2; exit 1; }
SFT=(train configs/tiny/dist_sft.yaml "dataset=$WORK/data/train.h5" plot_loss=false
  "max_steps=$STEPS" "save_steps=$HALF")
fails=0
pass() { echo "  ok: $*"; }
fail() {
  echo "  FAIL: $*"
  fails=$((fails + 1))
}
check() { # check DESCRIPTION COMMAND...
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "  $out"
    pass "$what"
  else
    echo "  $out"
    fail "$what"
  fi
}
run() { # run NAME ARGS...
  local name=$1
  shift
  "$IDOC" "$@" "output_dir=$WORK/$name" >"$WORK/$name.log" 2>&1 ||
    { fail "$name run (see $WORK/$name.log)" && tail -n 5 "$WORK/$name.log"; }
}
losses() { $PY -c 'import json,sys; print(" ".join("%.6g" % r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r))' "$1/trainer_log.jsonl"; }

echo "== bf16 checks in $WORK"
run f32_cpu "${SFT[@]}" device=cpu
run bf16 "${SFT[@]}" device=cuda bf16=true
if grep -q "no CUDA device is visible" "$WORK/bf16.log"; then
  echo "SKIP: no CUDA device is visible"
  exit 0
fi
echo "  cpu f32 losses:   $(losses "$WORK/f32_cpu")"
echo "  cuda bf16 losses: $(losses "$WORK/bf16")"
check "bf16 losses within 2e-2 of the f32 CPU run" $CMP losses --rtol 2e-2 "$WORK/f32_cpu" "$WORK/bf16"
if $CMP losses --rtol 1e-6 "$WORK/f32_cpu" "$WORK/bf16" >/dev/null 2>&1; then
  fail "bf16 losses equal the f32 ones to 1e-6: bf16 is not in effect"
else
  pass "bf16 losses differ from f32 beyond 1e-6 (bf16 storage in effect)"
fi
$PY - "$WORK/bf16/trainer_log.jsonl" <<'EOF' && pass "bf16 loss falls (last < first)" || fail "bf16 loss does not fall"
import json, sys
v = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
sys.exit(0 if len(v) >= 2 and v[-1] < v[0] else 1)
EOF
n=$($PY - "$WORK/bf16/checkpoint-$HALF/optimizer.safetensors" <<'EOF'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
h = json.loads(d[8 : 8 + struct.unpack("<Q", d[:8])[0]])
print(sum(1 for k, v in h.items() if k.startswith("master.") and v["dtype"] == "F32"))
EOF
)
[ "${n:-0}" -gt 0 ] && pass "checkpoint-$HALF holds $n fp32 masters" || fail "no fp32 masters in checkpoint-$HALF"
mkdir -p "$WORK/resumed" && cp -r "$WORK/bf16/checkpoint-$HALF" "$WORK/resumed/"
run resumed "${SFT[@]}" device=cuda bf16=true resume_from_checkpoint=true
check "resumed bf16 run: losses of steps $((HALF + 1))..$STEPS bitwise" $CMP losses --exact \
  --from $((HALF + 1)) "$WORK/resumed" "$WORK/bf16"
check "resumed bf16 run: gradient norms bitwise" $CMP losses --exact --field grad_norm \
  --from $((HALF + 1)) "$WORK/resumed" "$WORK/bf16"
check "resumed bf16 run: final weights bitwise" $CMP tensors --exact \
  "$WORK/resumed/final/model.safetensors" "$WORK/bf16/final/model.safetensors"

run grpo_bf16 train configs/tiny/dist_grpo.yaml "dataset=$WORK/data/train.h5" max_steps=2 \
  save_steps=0 per_device_train_batch_size=2 device=cuda bf16=true
$PY - "$WORK/grpo_bf16/trainer_log.jsonl" <<'EOF' && pass "bf16 GRPO: 2 steps, finite losses and rewards" || fail "bf16 GRPO did not log finite losses"
import json, math, sys
r = [x for x in map(json.loads, open(sys.argv[1])) if "loss" in x]
print("  GRPO bf16: " + ", ".join("loss %.4g reward %.4g" % (x["loss"], x["reward"]) for x in r))
sys.exit(0 if len(r) == 2 and all(math.isfinite(x["loss"]) and math.isfinite(x["reward"]) for x in r) else 1)
EOF
echo "== bf16 checks: $fails failed"
[ $fails -eq 0 ]
