// Collective communication for data-parallel training: one layer for host tensors (MPI, or a
// small TCP transport when the build has no MPI) and device tensors (NCCL; the simulator's NCCL
// runs over MPI), the job's rank/world from the launcher's environment, and a watchdog that ends
// the whole job, with a message naming the rank and its last step, when a rank dies or hangs.
//
// Ranks, in this order of precedence (a single process needs none of them):
//   OpenMPI mpirun     OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE
//   MPICH / Hydra      PMI_RANK / PMI_SIZE (MPI_LOCALRANKID)
//   Slurm srun step    SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID (a batch script's
//                      own shell also has SLURM_PROCID and SLURM_NTASKS: without a step
//                      (srun) the process is a single rank)
//   torchrun style     RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE, MASTER_ADDR / _PORT
// With world > 1 the host transport is MPI when the build has it and an MPI launcher (mpirun,
// mpiexec, srun) started the ranks (MPI_Init_thread, funneled; the world MPI reports must be the
// one the environment names, else an error says which srun --mpi flag is missing), and TCP
// through rank 0 otherwise (torchrun-style launches, builds without MPI: MASTER_ADDR and
// MASTER_PORT needed). IDOC_COMM_BACKEND=mpi|tcp forces one.
//
// Determinism: reductions add the ranks' contributions in rank order 0, 1, ..., W-1 (fp32 in
// fp32, bf16/f16 in fp32 rounded once), so every rank gets bitwise the same result, two runs
// give the same bits, and a reduce-scatter followed by an all-gather is bitwise an all-reduce
// (ZeRO-1 therefore equals plain data parallelism). The same holds for the device (NCCL) path
// under the simulator; real NCCL has its own fixed order per topology.
//
// Failures: collectives return nothing; a transport error or a watchdog decision ends the job.
// The control plane is a TCP connection from every rank to rank 0 (its address goes over MPI,
// or it is MASTER_ADDR:MASTER_PORT) carrying heartbeats with each rank's step, phase, progress
// counter and the collective it waits in. Rank 0's watchdog thread ends the job (every rank
// exits with status 1 after one line on stderr) when a rank
//   - dies (its connection closes without a goodbye: SIGKILL, a crash, the OOM killer),
//   - fails (idoc_comm_shutdown(false): it reports its error message),
//   - stops sending heartbeats for `timeout` seconds (a stopped or frozen process),
//   - makes no progress (tensor allocations, file writes) for `timeout` seconds outside a
//     collective (a hang: a deadlock, a stuck read), or
//   - when a collective that every rank entered has not completed in `timeout` seconds, or the
//     ranks wait in different collectives (a program bug) for that long;
// the other ranks end the job the same way when rank 0's connection closes or its heartbeats
// stop. Waiting for a slow but progressing peer is not a failure. idoc_comm_set_timeout sets
// `timeout` (config key ddp_timeout; default 60 s, env IDOC_DDP_TIMEOUT).
#pragma once
#include "kernels/tensor.h"

typedef enum { IDOC_RED_SUM = 0, IDOC_RED_AVG, IDOC_RED_MAX, IDOC_RED_MIN } idoc_red_op;

typedef struct {
  int rank, world, local_rank, local_world;
  const char *launcher; // "none", "openmpi", "mpich", "slurm", "torchrun"
  const char *backend;  // "single", "mpi", "tcp"
} idoc_comm_info;

// Joins the job the environment describes (nothing to do for a single process). Idempotent.
// IDOC_ERR naming the variable or what to install when the environment is inconsistent.
int idoc_comm_init(void);
// Rank and world of this process (0 and 1 before idoc_comm_init or for a single process).
const idoc_comm_info *idoc_comm_get(void);
int idoc_comm_rank(void);
int idoc_comm_world(void);
bool idoc_comm_is_main(void); // rank 0: writes logs, plots, checkpoints
// The CUDA device this rank uses: local_rank modulo the devices present (0 without CUDA).
int idoc_comm_device_index(void);

// What this rank is doing, for the watchdog's messages: the optimizer step and a phase name (a
// string literal or other static text; e.g. "rollouts", "checkpoint").
void idoc_comm_set_step(int64_t step);
void idoc_comm_set_phase(const char *phase);
// Seconds of no progress (see above) that end the job; <= 0 keeps the current value.
void idoc_comm_set_timeout(double seconds);

// Leaves the job. ok: every rank calls it (a collective), the transport is closed and the
// process may exit normally. !ok (this rank failed): rank 0 is told this rank's last error and
// ends the job; the call does not return when world > 1.
void idoc_comm_shutdown(bool ok);

// ---- collectives on tensors --------------------------------------------------------------
// Every rank calls them in the same order with the same shapes and dtypes (f32, bf16, f16, i32,
// i64 and f64 on the host and on the device; f64 sums are exact-order fp64, for gradient sums).
// Host tensors go through MPI/TCP, CUDA tensors through NCCL (on this rank's stream; the call
// returns when the result is ready).
void idoc_comm_all_reduce(idoc_tensor *t, idoc_red_op op); // in place
// in: world * n elements, out: n (rank r gets the reduction of every rank's block r).
void idoc_comm_reduce_scatter(const idoc_tensor *in, idoc_tensor *out, idoc_red_op op);
// in: n elements, out: world * n (block r is rank r's in).
void idoc_comm_all_gather(const idoc_tensor *in, idoc_tensor *out);
void idoc_comm_broadcast(idoc_tensor *t, int root);
void idoc_comm_barrier(void);
// Overlap (device tensors): the all-reduce is queued on the communication stream after the work
// already queued on the compute stream, and the call returns at once, so gradient buckets can be
// reduced while backward goes on; idoc_comm_device_wait then makes the compute stream wait for
// every queued collective (no host wait) and checks NCCL's asynchronous errors. Host tensors are
// reduced at once by _start.
void idoc_comm_all_reduce_start(idoc_tensor *t, idoc_red_op op);
void idoc_comm_device_wait(void);

// ---- host buffers -------------------------------------------------------------------------
// Small vectors (statistics, counts): every rank gets the reduction in rank order.
void idoc_comm_all_reduce_f64(double *x, int n, idoc_red_op op);
void idoc_comm_all_reduce_i64(int64_t *x, int n, idoc_red_op op);
// Uneven reduce-scatter / all-gather of f32 (ZeRO-1 shards): counts[world] elements per rank.
// in holds sum(counts) elements; out gets rank r's segment of the reduction.
void idoc_comm_reduce_scatterv_f32(const float *in, float *out, const int64_t *counts,
                                   idoc_red_op op);
void idoc_comm_reduce_scatterv_f64(const double *in, double *out, const int64_t *counts,
                                   idoc_red_op op);
// mine holds counts[rank] elements; out gets every rank's segment in rank order.
void idoc_comm_all_gatherv_f32(const float *mine, float *out, const int64_t *counts);
// Every rank's n bytes, in rank order, into out (world * n bytes).
void idoc_comm_all_gather_bytes(const void *mine, size_t n, void *out);
// Rank `root` gets every rank's bytes in rank order (sizes may differ); returns on root a
// malloc'ed buffer and sizes[world] (the caller frees both), NULL elsewhere.
void *idoc_comm_gather_bytes(const void *mine, size_t n, int root, size_t **sizes);
void idoc_comm_broadcast_bytes(void *p, size_t n, int root);
// Every rank's outcome of something only some ranks did (rank 0's file writes, a rank's data
// read): a collective, true on every rank when any rank passed rc != IDOC_OK; the other ranks'
// error message then becomes "rank R: <R's message>" of the lowest failing rank R.
bool idoc_comm_any_failed(int rc);

// Collectives this process has run (host and device), for tests and logs.
uint64_t idoc_comm_collectives(void);
