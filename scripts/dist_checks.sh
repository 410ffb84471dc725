#!/usr/bin/env bash
# The distributed checks: tiny SFT stage-2 and GRPO runs with 1 and 2 ranks, compared step by
# step and tensor by tensor (scripts/dist_compare.py), plus the failure handling. Run by ctest
# (launcher mpirun or env) and by scripts/ci_slurm.sh (srun, on a local Slurm cluster).
#
#   bash scripts/dist_checks.sh LAUNCHER IDOC WORKDIR [CHECK ...]
#
# LAUNCHER: mpirun (Open MPI), srun (Slurm, --mpi=pmix), env (torchrun-style RANK/WORLD_SIZE/
# MASTER_ADDR/MASTER_PORT processes; the TCP transport). IDOC: the idoc binary. Checks (all
# by default): sft (1 rank vs 2 ranks vs 2 ranks ZeRO-1 vs 1 rank ZeRO-1: losses within 1e-6
# per step, weights and moments within 1e-5, and in fact bitwise), resume (a 2-rank checkpoint resumed at 1 rank:
# the same later losses), grpo (1 vs 2 ranks), eval (sharded eval == one-rank eval, byte for
# byte), kill (SIGKILL of rank 1 mid-step ends the job within 60 s naming rank 1 and the step),
# hang (a hung rank ends the job after ddp_timeout), sigterm (a signal makes rank 0 checkpoint
# the step; resuming gives the uninterrupted run's losses), sft32 (1 vs 2 ranks with fp32
# gradient sums: losses within 1e-5; ZeRO-1 == no ZeRO bitwise), bf16 (a GPU's bf16 weights with
# fp32 masters: 1 vs 2 ranks, bitwise with fp64 sums; ZeRO-1 == no ZeRO bitwise, masters too).
# Exits non-zero on any failure.
#
# IDOC_DIST_ARGS: key=value settings added to every training run (e.g. "device=cuda
# grad_sum_dtype=fp64": the same checks on the simulated GPU, NCCL over MPI); IDOC_DIST_STEPS:
# the runs' max_steps (default 10, even; checkpoints every half).
set -uo pipefail
cd "$(dirname "$0")/.."
LAUNCHER=${1:?launcher: mpirun, srun or env}
IDOC=$(realpath "${2:?path to idoc}")
WORK=${3:?work directory}
shift 3
CHECKS=("$@")
[ ${#CHECKS[@]} -eq 0 ] && CHECKS=(sft resume grpo eval kill hang sigterm sft32)
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
CMP="$PY scripts/dist_compare.py"
# One CPU thread per rank: runs with different rank counts do the same arithmetic.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
JOB=idoc-dist-$$ # Slurm job name of the runs (for scancel)
# What mpirun passes on to the ranks (srun and env pass the whole environment).
MPI_X=()
for v in OMP_NUM_THREADS OPENBLAS_NUM_THREADS IDOC_TEST_KILL_RANK IDOC_TEST_KILL_STEP \
  IDOC_TEST_HANG_RANK IDOC_TEST_HANG_STEP IDOC_COMM_BACKEND ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
  [ -n "${!v+x}" ] && MPI_X+=(-x "$v")
done
fails=0
now_ms() { echo $(($(date +%s%N) / 1000000)); }
pass() { echo "  ok: $*"; }
fail() {
  echo "  FAIL: $*"
  fails=$((fails + 1))
}
check() { # check DESCRIPTION COMMAND...: runs the command, prints its output
  local what=$1
  shift
  if out=$("$@" 2>&1); then
    echo "  $out" | head -3
    pass "$what"
  else
    echo "  $out" | head -5
    fail "$what"
  fi
}

# launch N LOG ARGS...: idoc ARGS with N ranks (N = 1: a plain process, no launcher), given
# LIMIT seconds (default 600: a check that hangs fails instead of stopping CI).
launch() {
  local n=$1 log=$2 T="timeout -k 10 ${LIMIT:-600}"
  shift 2
  if [ "$n" = 1 ]; then
    $T "$IDOC" "$@" >"$log" 2>&1
    return
  fi
  case "$LAUNCHER" in
  mpirun) $T mpirun -np "$n" --oversubscribe "${MPI_X[@]}" "$IDOC" "$@" >"$log" 2>&1 ;;
  srun) $T srun -n "$n" -J "$JOB" --mpi=pmix --kill-on-bad-exit=1 "$IDOC" "$@" >"$log" 2>&1 ;;
  env)
    local port pids=() r rc=0
    port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    for ((r = 0; r < n; r++)); do
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 \
        MASTER_PORT=$port $T "$IDOC" "$@" >"$log.$r" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    cat "$log".* >"$log"
    return $rc
    ;;
  *) echo "unknown launcher $LAUNCHER" >&2 && return 2 ;;
  esac
}

# launch_bg N LOG ARGS...: the same in the background; $! is the launcher itself (mpirun, srun)
# or, for env, a shell whose children are the ranks.
launch_bg() {
  local n=$1 log=$2
  shift 2
  case "$LAUNCHER" in
  mpirun) (exec mpirun -np "$n" --oversubscribe -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS     "$IDOC" "$@" >"$log" 2>&1) & ;;
  srun) (exec srun -n "$n" -J "$JOB" --mpi=pmix --kill-on-bad-exit=1 "$IDOC" "$@" >"$log" 2>&1) & ;;
  *) launch "$n" "$log" "$@" & ;;
  esac
}

echo "== distributed checks with $LAUNCHER in $WORK"
"$IDOC" data synth --out "$WORK/data" --train 16 --val 0 --test 3 --size 112 --seed 5 >/dev/null
STEPS=${IDOC_DIST_STEPS:-10}
HALF=$((STEPS / 2))
read -r -a EXTRA <<<"${IDOC_DIST_ARGS:-}"
[ ${#EXTRA[@]} -gt 0 ] && echo "   every run with: ${EXTRA[*]}, $STEPS steps"
RUN=("max_steps=$STEPS" "save_steps=$HALF" "${EXTRA[@]}")
SFT=(train configs/tiny/dist_sft.yaml "dataset=$WORK/data/train.h5" plot_loss=false "${RUN[@]}")
GRPO=(train configs/tiny/dist_grpo.yaml "dataset=$WORK/data/train.h5" "${RUN[@]}")
t_all=$SECONDS

split_runs() { # split_runs NAME KEY=VALUE...: NAME1 (1 rank x 4), NAME2 (2 x 2), NAME2z (ZeRO-1)
  local name=$1
  shift
  launch 1 "$WORK/${name}1.log" "${SFT[@]}" "$@" "output_dir=$WORK/${name}1" \
    gradient_accumulation_steps=4 || fail "1-rank SFT run (see $WORK/${name}1.log)"
  launch 2 "$WORK/${name}2.log" "${SFT[@]}" "$@" "output_dir=$WORK/${name}2" \
    gradient_accumulation_steps=2 || fail "2-rank SFT run (see $WORK/${name}2.log)"
  launch 2 "$WORK/${name}2z.log" "${SFT[@]}" "$@" "output_dir=$WORK/${name}2z" \
    gradient_accumulation_steps=2 zero_stage=1 || fail "2-rank ZeRO-1 SFT run (see $WORK/${name}2z.log)"
}

sft_runs() { # the SFT runs the sft, resume, eval and sigterm checks share
  [ -d "$WORK/sft1/final" ] && return
  split_runs sft
  launch 1 "$WORK/sft1z.log" "${SFT[@]}" "output_dir=$WORK/sft1z" gradient_accumulation_steps=4 \
    zero_stage=1 || fail "1-rank ZeRO-1 SFT run (see $WORK/sft1z.log)"
}

for c in "${CHECKS[@]}"; do
  t0=$SECONDS
  echo "-- $c"
  case "$c" in
  sft)
    sft_runs
    check "SFT losses, 1 vs 2 ranks (global batch 4)" $CMP losses "$WORK/sft1" "$WORK/sft2"
    check "SFT final weights, 1 vs 2 ranks" $CMP tensors "$WORK/sft1/final/model.safetensors" \
      "$WORK/sft2/final/model.safetensors"
    check "SFT AdamW moments, 1 vs 2 ranks" $CMP tensors \
      "$WORK/sft1/checkpoint-$STEPS/optimizer.safetensors" "$WORK/sft2/checkpoint-$STEPS/optimizer.safetensors"
    check "SFT 1 vs 2 ranks: bitwise the same losses" $CMP losses --exact "$WORK/sft1" "$WORK/sft2"
    check "SFT 1 vs 2 ranks: bitwise the same weights" $CMP tensors --exact \
      "$WORK/sft1/final/model.safetensors" "$WORK/sft2/final/model.safetensors"
    check "ZeRO-1 == no ZeRO: losses (bitwise)" $CMP losses --exact "$WORK/sft2" "$WORK/sft2z"
    check "ZeRO-1 == no ZeRO: weights (bitwise)" $CMP tensors --exact \
      "$WORK/sft2/final/model.safetensors" "$WORK/sft2z/final/model.safetensors"
    check "ZeRO-1 == no ZeRO: gathered moments (bitwise)" $CMP tensors --exact \
      "$WORK/sft2/checkpoint-$STEPS/optimizer.safetensors" "$WORK/sft2z/checkpoint-$STEPS/optimizer.safetensors"
    check "ZeRO-1 on one rank == no ZeRO: weights and moments (bitwise)" $CMP tensors --exact \
      "$WORK/sft1/checkpoint-$STEPS/optimizer.safetensors" "$WORK/sft1z/checkpoint-$STEPS/optimizer.safetensors"
    ;;
  resume)
    sft_runs
    # The 2-rank ZeRO-1 run's mid-run checkpoint (shards gathered), resumed by one rank.
    mkdir -p "$WORK/sft21"
    cp -r "$WORK/sft2z/checkpoint-$HALF" "$WORK/sft21/"
    launch 1 "$WORK/sft21.log" "${SFT[@]}" "output_dir=$WORK/sft21" gradient_accumulation_steps=4 \
      resume_from_checkpoint=true || fail "1-rank resume (see $WORK/sft21.log)"
    grep -q "resuming from $WORK/sft21/checkpoint-$HALF" "$WORK/sft21.log" && pass "resumed from the 2-rank checkpoint-$HALF" ||
      fail "did not resume from checkpoint-$HALF"
    check "2 -> 1 ranks: losses of steps $((HALF + 1))..$STEPS" $CMP losses --from $((HALF + 1)) --to $STEPS "$WORK/sft21" "$WORK/sft2"
    check "2 -> 1 ranks: final weights" $CMP tensors "$WORK/sft21/final/model.safetensors" \
      "$WORK/sft2/final/model.safetensors"
    ;;
  grpo)
    launch 1 "$WORK/grpo1.log" "${GRPO[@]}" "output_dir=$WORK/grpo1" per_device_train_batch_size=2 ||
      fail "1-rank GRPO run (see $WORK/grpo1.log)"
    launch 2 "$WORK/grpo2.log" "${GRPO[@]}" "output_dir=$WORK/grpo2" per_device_train_batch_size=1 ||
      fail "2-rank GRPO run (see $WORK/grpo2.log)"
    for f in loss reward kl grad_norm entropy; do
      check "GRPO $f, 1 vs 2 ranks (2 prompts x 3 completions per step)" $CMP losses --field $f \
        "$WORK/grpo1" "$WORK/grpo2"
    done
    check "GRPO final weights, 1 vs 2 ranks" $CMP tensors "$WORK/grpo1/final/model.safetensors" \
      "$WORK/grpo2/final/model.safetensors"
    ;;
  eval)
    sft_runs
    E=(eval --checkpoint "$WORK/sft1/final" --data "$WORK/data/test.h5" max_new_tokens=16 image_size=56
      "${EXTRA[@]}")
    launch 1 "$WORK/eval1.log" "${E[@]}" --out "$WORK/eval1" || fail "1-rank eval"
    launch 2 "$WORK/eval2.log" "${E[@]}" --out "$WORK/eval2" || fail "2-rank eval"
    check "sharded eval (3 samples over 2 ranks) == 1-rank eval" $CMP same \
      "$WORK/eval1/eval_results.json" "$WORK/eval2/eval_results.json"
    ;;
  kill)
    s=$(now_ms)
    LIMIT=120 IDOC_TEST_KILL_RANK=1 IDOC_TEST_KILL_STEP=3 launch 2 "$WORK/kill.log" "${SFT[@]}" \
      "output_dir=$WORK/kill" max_steps=1000 save_steps=0
    rc=$?
    el=$(($(now_ms) - s))
    grep "idoc:" "$WORK/kill.log" | head -3 | sed 's/^/  /'
    [ $rc -ne 0 ] && pass "the job failed (status $rc)" || fail "the job succeeded"
    grep -q "rank 1 .*died.*step 3" "$WORK/kill.log" && pass "the message names rank 1 and step 3" ||
      fail "no message naming rank 1 and step 3"
    [ $el -lt 60000 ] && pass "ended in $el ms (< 60 s)" || fail "took $el ms"
    ;;
  hang)
    s=$(now_ms)
    LIMIT=120 IDOC_TEST_HANG_RANK=1 IDOC_TEST_HANG_STEP=3 launch 2 "$WORK/hang.log" "${SFT[@]}" \
      "output_dir=$WORK/hang" max_steps=1000 save_steps=0 ddp_timeout=5
    rc=$?
    el=$(($(now_ms) - s))
    grep "idoc:" "$WORK/hang.log" | head -3 | sed 's/^/  /'
    [ $rc -ne 0 ] && pass "the job failed (status $rc)" || fail "the job succeeded"
    grep -q "rank 1 .*hung.*step 3" "$WORK/hang.log" && pass "the message names rank 1 and step 3" ||
      fail "no message naming rank 1 and step 3"
    [ $el -lt 60000 ] && pass "ended in $el ms (< 60 s, ddp_timeout 5 s)" || fail "took $el ms"
    ;;
  sigterm)
    sft_runs
    # Slurm preemption sends SIGTERM to every task; mpirun forwards SIGUSR1 (SIGTERM makes it
    # kill the job itself), which idoc treats the same.
    sig=TERM
    [ "$LAUNCHER" = mpirun ] && sig=USR1
    SIG_AT=$((STEPS >= 6 ? 3 : 1)) # the step after which the signal is sent
    launch_bg 2 "$WORK/term.log" "${SFT[@]}" "output_dir=$WORK/term" gradient_accumulation_steps=2 \
      save_steps=0
    lp=$!
    for ((i = 0; i < 600; i++)); do
      grep -q "\"current_steps\": $SIG_AT," "$WORK/term/trainer_log.jsonl" 2>/dev/null && break
      sleep 0.1
    done
    case "$LAUNCHER" in
    env) pkill -"$sig" -P "$lp" ;;
    srun) scancel -s "$sig" -n "$JOB" ;; # what preemption (or --signal) does: every task
    *) kill -"$sig" "$lp" ;;
    esac
    wait "$lp"
    rc=$?
    grep "stopped by a signal" "$WORK/term.log" | head -1 | sed 's/^/  /'
    n=$(ls -d "$WORK"/term/checkpoint-* 2>/dev/null | sed 's/.*checkpoint-//' | head -1)
    [ "$rc" = 143 ] && pass "stopped with status 143" || fail "status $rc (143 expected)"
    if [ -n "$n" ] && [ "$n" -lt "$STEPS" ]; then
      pass "rank 0 saved checkpoint-$n"
    else
      fail "no checkpoint before step $STEPS"
      continue
    fi
    launch 2 "$WORK/term2.log" "${SFT[@]}" "output_dir=$WORK/term" gradient_accumulation_steps=2 \
      save_steps=0 resume_from_checkpoint=true || fail "resume after the signal (see $WORK/term2.log)"
    check "after the signal: losses of steps $((n + 1))..$STEPS bitwise those of the uninterrupted run" \
      $CMP losses --exact --from $((n + 1)) --to $STEPS "$WORK/term" "$WORK/sft2"
    check "after the signal: final weights bitwise" $CMP tensors --exact \
      "$WORK/term/final/model.safetensors" "$WORK/sft2/final/model.safetensors"
    ;;
  sft32)
    # fp32 gradient sums (the GPU default): 1 and 2 ranks add the micro-batches in different
    # orders, so they agree to fp32 rounding only; ZeRO-1 still equals no ZeRO bit for bit.
    split_runs f grad_sum_dtype=fp32
    check "fp32 sums: SFT losses, 1 vs 2 ranks (rtol 1e-5)" $CMP losses --rtol 1e-5 "$WORK/f1" "$WORK/f2"
    check "fp32 sums: ZeRO-1 == no ZeRO: losses (bitwise)" $CMP losses --exact "$WORK/f2" "$WORK/f2z"
    check "fp32 sums: ZeRO-1 == no ZeRO: weights (bitwise)" $CMP tensors --exact \
      "$WORK/f2/final/model.safetensors" "$WORK/f2z/final/model.safetensors"
    ;;
  bf16)
    # bf16 weights with fp32 masters (a GPU's: run with IDOC_DIST_ARGS=device=cuda ...).
    split_runs b bf16=true
    tol=(--rtol 1e-5) # fp32 sums agree to rounding; fp64 sums bit for bit
    [[ " ${EXTRA[*]} " == *" grad_sum_dtype=fp64 "* ]] && tol=(--exact)
    check "bf16: SFT losses, 1 vs 2 ranks (${tol[*]})" $CMP losses "${tol[@]}" "$WORK/b1" "$WORK/b2"
    [ "${tol[0]}" = --exact ] && check "bf16: final weights, 1 vs 2 ranks (bitwise)" $CMP tensors \
      --exact "$WORK/b1/final/model.safetensors" "$WORK/b2/final/model.safetensors"
    check "bf16: ZeRO-1 == no ZeRO: losses (bitwise)" $CMP losses --exact "$WORK/b2" "$WORK/b2z"
    check "bf16: ZeRO-1 == no ZeRO: weights (bitwise)" $CMP tensors --exact \
      "$WORK/b2/final/model.safetensors" "$WORK/b2z/final/model.safetensors"
    check "bf16: ZeRO-1 == no ZeRO: moments and fp32 masters (bitwise)" $CMP tensors --exact \
      "$WORK/b2/checkpoint-$STEPS/optimizer.safetensors" "$WORK/b2z/checkpoint-$STEPS/optimizer.safetensors"
    # The 2-rank ZeRO-1 checkpoint (masters sharded, gathered when saved) resumed by 1 rank and
    # by 2 ZeRO-1 ranks (each loads its shard of the masters).
    for n in 1 2; do
      mkdir -p "$WORK/b2z$n" && cp -r "$WORK/b2z/checkpoint-$HALF" "$WORK/b2z$n/"
      z=0
      [ $n = 2 ] && z=1
      launch $n "$WORK/b2z$n.log" "${SFT[@]}" bf16=true "output_dir=$WORK/b2z$n" zero_stage=$z \
        gradient_accumulation_steps=$((4 / n)) resume_from_checkpoint=true ||
        fail "bf16 resume on $n rank(s) (see $WORK/b2z$n.log)"
      check "bf16: the 2-rank ZeRO-1 checkpoint resumed on $n rank(s): losses" $CMP losses \
        "${tol[@]}" --from $((HALF + 1)) "$WORK/b2z$n" "$WORK/b2z"
    done
    ;;
  *) fail "unknown check $c" ;;
  esac
  echo "   ($((SECONDS - t0)) s)"
done
echo "== distributed checks ($LAUNCHER): $fails failed, $((SECONDS - t_all)) s"
[ $fails -eq 0 ]
