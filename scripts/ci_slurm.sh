#!/usr/bin/env bash
# The Slurm stage of CI: a real one-node Slurm cluster on this machine (Debian's slurm-wlm and
# munge, started by hand: no systemd, no cgroups), then the distributed checks with `srun -n 2`
# (scripts/dist_checks.sh: 1 vs 2 ranks, ZeRO-1, 2 -> 1 rank resume, GRPO, sharded eval, a
# killed rank, a hung rank, SIGTERM from `scancel`), the job scripts through `bash -n`, and the
# tiny job submitted with `sbatch` and waited for. The daemons are stopped at the end, whatever
# happened.
#
#   bash scripts/ci_slurm.sh [IDOC]        (IDOC: the idoc binary, default build/idoc)
#
# Runs as root (CI) or with sudo. Everything lives under $IDOC_SLURM_TMP (default
# /tmp/idoc-slurm-ci): slurm.conf (SLURM_CONF), state, spool, logs; ports 16817/16818
# (IDOC_SLURM_PORT sets the first).
set -euo pipefail
cd "$(dirname "$0")/.."
IDOC=$(realpath "${1:-build/idoc}")
T=${IDOC_SLURM_TMP:-/tmp/idoc-slurm-ci}
PORT=${IDOC_SLURM_PORT:-16817}
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
t0=$SECONDS

echo "== Slurm: installing slurm-wlm, slurmctld, slurmd, munge"
PKGS=(slurm-wlm slurmctld slurmd slurm-client munge)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # The packages' own service starts fail without systemd; that is fine, we start them here.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || true
fi
for b in munged slurmctld slurmd srun sbatch sinfo scancel; do
  command -v "$b" >/dev/null || { echo "ci_slurm: $b is missing after the install" >&2; exit 1; }
done

# ---- the cluster ----------------------------------------------------------------------------
HOST=$(hostname -s)
NCPU=$(nproc)
$SUDO rm -rf "$T"
$SUDO mkdir -p "$T/state" "$T/spool" "$T/log" "$T/munge"
export SLURM_CONF=$T/slurm.conf
$SUDO tee "$SLURM_CONF" >/dev/null <<EOF
# A one-node cluster for CI: no cgroups, no accounting, root runs everything.
ClusterName=idocci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=30
InactiveLimit=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

stop_all() {
  set +e
  for pf in "$T/slurmd.pid" "$T/slurmctld.pid" "$T/munge/munged.pid"; do
    [ -f "$pf" ] && $SUDO kill "$(cat "$pf")" 2>/dev/null
  done
  sleep 1
  for pf in "$T/slurmd.pid" "$T/slurmctld.pid" "$T/munge/munged.pid"; do
    [ -f "$pf" ] && $SUDO kill -9 "$(cat "$pf")" 2>/dev/null
  done
  echo "== Slurm: daemons stopped ($((SECONDS - t0)) s in the Slurm stage)"
}
trap stop_all EXIT

echo "== Slurm: starting munged, slurmctld, slurmd"
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO mungekey -c -k /etc/munge/munge.key 2>/dev/null ||
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  $SUDO chmod 600 /etc/munge/munge.key
fi
# Root runs the daemons (--force: munged otherwise refuses a root-owned key and socket).
$SUDO chown root:root /etc/munge/munge.key
$SUDO mkdir -p /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "   munged is already running"
else
  $SUDO munged --force --socket=/run/munge/munge.socket.2 --pid-file="$T/munge/munged.pid" \
    --log-file="$T/log/munged.log" --seed-file="$T/munge/munged.seed"
fi
munge -n | unmunge >/dev/null || { echo "ci_slurm: munge does not work" >&2; exit 1; }
$SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -c -f "$SLURM_CONF"
$SUDO env SLURM_CONF="$SLURM_CONF" slurmd -f "$SLURM_CONF"
for ((i = 0; i < 60; i++)); do
  sinfo -h -o "%T" 2>/dev/null | grep -q idle && break
  sleep 1
done
sinfo
sinfo -h -o "%T" | grep -q idle || {
  echo "ci_slurm: the node did not come up idle" >&2
  tail -20 "$T"/log/*.log >&2
  exit 1
}
srun --mpi=list 2>&1 | grep -q pmix || { echo "ci_slurm: Slurm has no PMIx plugin" >&2; exit 1; }
echo "   cluster up ($((SECONDS - t0)) s)"

# ---- the checks --------------------------------------------------------------------------------
fails=0
echo "== Slurm: the job scripts parse (bash -n)"
for f in scripts/slurm/*.sbatch scripts/slurm/env.sh; do
  bash -n "$f" && echo "  ok: $f" || { echo "  FAIL: $f"; fails=$((fails + 1)); }
done

bash scripts/dist_checks.sh srun "$IDOC" "$T/dist" || fails=$((fails + 1))

echo "== Slurm: sbatch scripts/slurm/tiny.sbatch, waiting for it"
ts=$SECONDS
out=$T/tiny
if sbatch --wait --parsable -o "$T/tiny-%j.out" --export=ALL,IDOC="$IDOC",IDOC_TINY_OUT="$out" \
  scripts/slurm/tiny.sbatch >"$T/tiny.jobid"; then
  echo "  ok: job $(cat "$T/tiny.jobid") completed ($((SECONDS - ts)) s)"
else
  echo "  FAIL: the tiny job failed"
  fails=$((fails + 1))
fi
tail -3 "$T"/tiny-*.out | sed 's/^/  /'
for f in "$out/sft/final/model.safetensors" "$out/sft/eval_results.json" \
  "$out/grpo/final/model.safetensors" "$out/grpo/trainer_log.jsonl"; do
  [ -s "$f" ] && echo "  ok: $f" || { echo "  FAIL: $f is missing"; fails=$((fails + 1)); }
done
[ "$(grep -c current_steps "$out/sft/trainer_log.jsonl" 2>/dev/null)" = 10 ] &&
  echo "  ok: 10 SFT steps logged (by rank 0 only)" || { echo "  FAIL: SFT log"; fails=$((fails + 1)); }
echo "== Slurm stage: $fails failed"
[ $fails -eq 0 ]
