// The smoke training: a tiny Qwen2-style decoder (embedding, RMSNorm, GQA attention with q/k/v
// bias and 1-D RoPE, SwiGLU MLP, tied head) learns to copy a random prefix after a separator.
// Copying needs attention across positions (an induction pattern), so a falling loss shows
// that every op, the tape, AdamW and the schedule work together. Sequences are packed as
// variable-length segments, exercising the varlen attention path.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/tensor.h"

typedef struct {
  int vocab; // symbols 0..vocab-2 plus the separator (vocab-1)
  int dim, n_heads, n_kv_heads, hidden, n_layers;
  int prefix_len; // each sequence: prefix, separator, prefix again
  int batch;      // sequences per step (packed)
  int steps, warmup;
  float lr;
  uint64_t seed;
  bool checkpointing; // recompute each layer in backward
  int threads;        // 0 = OpenMP default
  idoc_device dev;    // parameters, activations and the optimizer (the batch is built on the host)
} idoc_smoke_cfg;

typedef struct {
  size_t act_blocks_after_first_step, act_blocks_at_end; // arena blocks ever allocated
  size_t act_peak_bytes;
  double seconds;
} idoc_smoke_stats;

idoc_smoke_cfg idoc_smoke_default(void);
// Trains; losses[i] (if not NULL) receives the loss of step i; stats may be NULL. Returns the
// mean loss over the last 10 steps.
double idoc_smoke_train(const idoc_smoke_cfg *cfg, float *losses, idoc_smoke_stats *stats,
                        bool verbose);
