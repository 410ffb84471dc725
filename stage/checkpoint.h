// Training checkpoints: output_dir/checkpoint-STEP/ holds the model in HF layout (weights,
// config.json, tokenizer.json), optimizer.safetensors (AdamW moments of the trainable
// parameters, f32, named "exp_avg.NAME" / "exp_avg_sq.NAME"), trainer_state.json (step, epoch,
// AdamW step, data cursor, rollout RNG) and training_args.yaml (the effective config). The
// folder is written as checkpoint-STEP.tmp, sealed with manifest.json and swapped in by renames
// (stage/sealed_dir.h), so a kill at any byte leaves the old checkpoint or the new one, never a
// partial one; save_total_limit removes the oldest the same way. No checkpoint ever holds a
// non-finite weight or moment: the save refuses and names the tensor.
// idoc-requires: yaml pcre2 utf8proc cjson
#pragma once
#include <stdint.h>

#include "data/loader.h"
#include "stage/config.h"
#include "stage/model_setup.h"
#include "stage/optim.h"

#define IDOC_STATE_WINDOW 16

typedef struct {
  int64_t global_step;
  double epoch;
  int adam_step;
  idoc_loader_cursor cursor;
  uint64_t rng_state[4];  // rollout sampling state (GRPO); zeros for SFT
  double elapsed;         // seconds of training before this checkpoint
  int nonfinite_in_a_row; // optimizer steps skipped in a row for a NaN/Inf gradient norm
  // The trainer's running sums that a resumed run needs to log what the uninterrupted run
  // logs (the partial logging window, summary means): its own layout, saved exactly.
  int n_window;
  double window[IDOC_STATE_WINDOW];
} idoc_trainer_state;

// moments: NULL (the parameters' own) or 2 per parameter (exp_avg, exp_avg_sq; NULL for frozen
// ones) to save instead, e.g. the ZeRO-1 shards gathered on rank 0 (stage/dist.h). masters:
// NULL or one per parameter (NULL where there is none): the fp32 masters of bf16 weights, saved
// as master.NAME next to the moments.
int idoc_checkpoint_save(const char *output_dir, const idoc_train_config *cfg,
                         const idoc_model_bundle *b, const idoc_trainer_state *st,
                         idoc_tensor *const *moments, idoc_tensor *const *masters);
// Restores optimizer moments and the trainer state from a checkpoint folder (the model weights
// are loaded by idoc_model_setup from the same folder).
int idoc_checkpoint_load_state(const char *dir, idoc_model_bundle *b, idoc_trainer_state *st);
// Only trainer_state.json (the moments are loaded by idoc_dp_load_moments, stage/dist.h).
int idoc_checkpoint_load_trainer_state(const char *dir, idoc_trainer_state *st);
// The newest complete checkpoint-N folder in output_dir into out (IDOC_ERR if none, naming
// the incomplete ones and why); verbose: each one skipped is reported on stderr.
int idoc_checkpoint_latest(const char *output_dir, char *out, size_t n, bool verbose);
// Keeps the `limit` newest checkpoint-N folders (0: all).
int idoc_checkpoint_rotate(const char *output_dir, int limit);
// IDOC_ERR naming the first weight or optimizer moment that holds a NaN/Inf (a saved model
// must never hold one: resuming from it would continue from garbage); `where` prefixes it.
int idoc_bundle_check_finite(const idoc_model_bundle *b, const char *where);
// The same with the moments given as for idoc_checkpoint_save.
int idoc_bundle_check_finite_with(const idoc_model_bundle *b, idoc_tensor *const *moments,
                                  const char *where);
