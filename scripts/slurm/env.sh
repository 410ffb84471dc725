# Sourced by the job scripts in scripts/slurm/: where things are, the rendezvous variables, the
# CPU threads of each rank and the NCCL defaults, and IDOC_SRUN, the launch line of a step.
#
# Run sbatch from the repository checkout, on a file system every node sees: the configs'
# relative paths (models/, data/, saves/, runs/) start there, output_dir must be shared (rank 0
# writes checkpoints that every rank reads when resuming). Or set before sbatch:
#   IDOC_ROOT  the checkout (default: where sbatch was run)
#   IDOC       the idoc binary, built for the nodes (default: $IDOC_ROOT/build/idoc)
# idoc reads its rank, world and local rank from srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS,
# SLURM_LOCALID) and joins over MPI (PMIx: srun --mpi=pmix); rank 0's TCP control plane and the
# NCCL unique id go over it too. MASTER_ADDR/MASTER_PORT are set as well, for builds without MPI
# (then the TCP transport carries the host collectives).
IDOC_ROOT=${IDOC_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$IDOC_ROOT" || exit 1
IDOC=${IDOC:-$IDOC_ROOT/build/idoc}
if [ ! -x "$IDOC" ]; then
  echo "scripts/slurm: no idoc binary at $IDOC (set IDOC, or build into $IDOC_ROOT/build)" >&2
  exit 1
fi
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=$((20000 + ${SLURM_JOB_ID:-0} % 20000))
export MASTER_ADDR MASTER_PORT
# One rank per GPU (or per --cpus-per-task CPUs): its CPU threads are the CPUs Slurm gave it.
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# NCCL: errors surface instead of hanging, warnings printed. Cluster-specific settings stay
# with the cluster (NCCL_SOCKET_IFNAME=ib0 or eth0, NCCL_IB_HCA, NCCL_IB_GID_INDEX, ...).
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1 NCCL_ASYNC_ERROR_HANDLING=1
# A dead or stuck rank ends the job (idoc's watchdog, and Slurm's own check as a backstop).
IDOC_SRUN=(srun --mpi=pmix --kill-on-bad-exit=1 --cpu-bind=cores)
echo "job ${SLURM_JOB_ID:-?}: ${SLURM_NNODES:-1} node(s), ${SLURM_NTASKS:-1} task(s), rank 0 on $MASTER_ADDR; in $IDOC_ROOT"
