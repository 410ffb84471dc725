// Data parallelism for the training stages (SFT in train/, GRPO in rl/), over the job's ranks
// (nn/comm.h). Every rank holds the whole model and trains on its shard of each global batch
// (per_device_train_batch_size x world x gradient_accumulation_steps samples; data/loader.h
// gives rank r positions r, r + W, ...); the trainers normalise losses by the global counts
// (tokens, maps, sequences), so summing the ranks' gradients gives the one-rank gradient of the
// same global batch. Rank 0 writes logs, plots and checkpoints.
//
// An optimizer step (idoc_dp_step):
//   1. gradients are summed in fp64: each micro-batch's into the step's sum
//      (idoc_dp_accumulate), then across ranks in buckets of ddp_bucket_cap_mb (the trainable
//      parameters laid end to end in store order), in rank order, and rounded to fp32 once.
//      Sums of a few floats are exact in fp64, so with the same per_device_train_batch_size
//      the step's gradient does not depend on how the global batch is split over ranks and
//      accumulation steps: W ranks give bitwise (up to the rare inexact fp64 sum) the
//      gradient one rank computes. Every rank gets the same bits, and two runs too.
//      That is grad_sum_dtype fp64, auto's choice on the CPU; on a GPU (parameters on a CUDA
//      device, NCCL) auto is fp32: backward accumulates the micro-batches into the gradients
//      and the ranks' gradients are summed in place (agreement to rounding only);
//   2. the global gradient norm is the square root of the fp64 sum, in rank order, of the
//      squared norms of W contiguous shards of that flat space (computed locally without ZeRO,
//      one shard per rank with it: the same numbers either way), so clipping and the NaN guard
//      decide the same on every rank (on a device: of fixed 2^20-element chunks, so the norm
//      does not depend on W either);
//   3. AdamW: without ZeRO every rank updates everything (replicated moments); with
//      zero_stage: 1 (ZeRO-1) rank r keeps the moments of shard r only, its gradients come from
//      a reduce-scatter, it updates shard r and the weights are all-gathered. Both give bitwise
//      the same weights. f32 parameters are their own fp32 masters; with bf16 parameters (a
//      GPU's bf16: true) every micro-batch's gradient goes into a flat fp32 (or fp64) sum that
//      the ranks reduce, AdamW updates flat fp32 masters (with ZeRO-1 each rank its shard's,
//      all-gathered after the update) and the bf16 weights are the masters rounded;
//      checkpoints save the masters.
// Checkpoints hold the full moments (ZeRO shards are gathered on rank 0 when saving), so a run
// resumes at any world size; the data cursor is translated to the new world (its global
// position must be a multiple of the new world size).
//
// SIGTERM or SIGUSR1 (Slurm preemption, `--signal`): the ranks agree at the next step boundary
// (a max over ranks), rank 0 saves a checkpoint of that step and the stage stops with an error
// saying so; `idoc` exits with status 143 after leaving the job cleanly. A second signal ends
// the process at once.
//
// Test hooks (read from the environment): IDOC_TEST_KILL_RANK=r with IDOC_TEST_KILL_STEP=s
// SIGKILLs rank r in the middle of step s (after its backward, before the gradient reduce);
// IDOC_TEST_HANG_RANK / IDOC_TEST_HANG_STEP make it sleep there forever instead.
// idoc-requires: yaml
#pragma once
#include "data/loader.h"
#include "stage/config.h"
#include "stage/optim.h"

typedef struct idoc_dp idoc_dp;

// Joins the job the environment describes (nn/comm.h) and applies ddp_timeout.
int idoc_dp_join(const idoc_train_config *cfg);
// Data parallelism over ps's trainable parameters (call after freezing; the set must not change
// afterwards). Broadcasts rank 0's weights (every parameter) so all ranks start equal.
// opt is initialized here (replicated moments, or none with ZeRO-1). micro_batches: backward
// passes per step on this rank (gradient_accumulation_steps for SFT, prompt groups for GRPO).
idoc_dp *idoc_dp_new(const idoc_train_config *cfg, idoc_params *ps, idoc_adamw *opt,
                     int micro_batches);
void idoc_dp_free(idoc_dp *dp);
int idoc_dp_rank(const idoc_dp *dp);
int idoc_dp_world(const idoc_dp *dp);
int idoc_dp_zero_stage(const idoc_dp *dp);

// After each micro-batch's backward (gradient accumulation): its gradients are added into the
// step's fp64 sum and zeroed. Needed only between micro-batches; idoc_dp_step adds the last.
void idoc_dp_accumulate(idoc_dp *dp);
// One optimizer step at learning rate lr (see above); returns the global gradient norm. A
// non-finite norm skips the step on every rank (nothing changes; opt->skipped counts it).
// Gradients are left reduced (or, with ZeRO-1, reduced on this rank's shard only).
float idoc_dp_step(idoc_dp *dp, idoc_adamw *opt, float lr);

// The moments a checkpoint saves: NULL without ZeRO-1 (the parameters' own); with it rank 0
// gets exp_avg / exp_avg_sq tensors for every parameter (2 per parameter, NULL for frozen
// ones; valid until the next call or idoc_dp_free) gathered from every shard, the others NULL.
// A collective: every rank calls it.
idoc_tensor **idoc_dp_gather_moments(idoc_dp *dp);
// bf16 parameters: the fp32 masters a checkpoint saves, one per parameter (NULL for frozen and
// f32 ones), on rank 0 (with ZeRO-1: gathered by the last idoc_dp_gather_moments, valid until the
// next); NULL without bf16 parameters.
idoc_tensor **idoc_dp_masters(idoc_dp *dp);
// Restores this rank's moments from a checkpoint's optimizer.safetensors (ZeRO-1: only its
// shard; otherwise into the parameters' own moments), and the fp32 masters of bf16 weights
// (master.NAME; a checkpoint without them, e.g. of an f32 run, starts them from the weights).
int idoc_dp_load_moments(idoc_dp *dp, const char *ckpt_dir);

// The loader cursor of a checkpoint (written by rank 0 of a run with `saved->world` ranks) for
// this rank of this world: the global position is kept.
int idoc_dp_cursor(const idoc_dp *dp, const idoc_loader_cursor *saved, idoc_loader_cursor *out);

// Preemption: handlers for SIGTERM / SIGUSR1 (install at the start of a stage, restore at its
// end). idoc_dp_stop_agreed is a collective: true on every rank when any rank got a signal.
void idoc_dp_signals_install(void);
void idoc_dp_signals_restore(void);
bool idoc_dp_stop_agreed(idoc_dp *dp);
// True once a stage stopped for a signal (the process then exits with 143).
bool idoc_dp_stopped_by_signal(void);
void idoc_dp_mark_stopped(void);

// The test hooks above, at step `step` (1-based).
void idoc_dp_test_hooks(const idoc_dp *dp, int64_t step);
