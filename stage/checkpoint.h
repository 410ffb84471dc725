// Training checkpoints: output_dir/checkpoint-STEP/ holds the model in HF layout (weights,
// config.json, tokenizer.json), optimizer.safetensors (AdamW moments of the trainable
// parameters, f32, named "exp_avg.NAME" / "exp_avg_sq.NAME"), trainer_state.json (step, epoch,
// AdamW step, data cursor, rollout RNG) and training_args.yaml (the effective config). The
// folder is written as checkpoint-STEP.tmp and renamed, so a killed save never leaves a folder
// that looks complete; save_total_limit removes the oldest afterwards.
// idoc-requires: yaml pcre2 utf8proc cjson
#pragma once
#include <stdint.h>

#include "data/loader.h"
#include "stage/config.h"
#include "stage/model_setup.h"
#include "stage/optim.h"

typedef struct {
  int64_t global_step;
  double epoch;
  int adam_step;
  idoc_loader_cursor cursor;
  uint64_t rng_state[4]; // rollout sampling state (GRPO); zeros for SFT
  double elapsed;        // seconds of training before this checkpoint
} idoc_trainer_state;

int idoc_checkpoint_save(const char *output_dir, const idoc_train_config *cfg,
                         const idoc_model_bundle *b, const idoc_trainer_state *st);
// Restores optimizer moments and the trainer state from a checkpoint folder (the model weights
// are loaded by idoc_model_setup from the same folder).
int idoc_checkpoint_load_state(const char *dir, idoc_model_bundle *b, idoc_trainer_state *st);
// The newest checkpoint-N folder in output_dir into out (IDOC_ERR if none).
int idoc_checkpoint_latest(const char *output_dir, char *out, size_t n);
// Keeps the `limit` newest checkpoint-N folders (0: all).
int idoc_checkpoint_rotate(const char *output_dir, int limit);
