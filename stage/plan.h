// The memory plan of a training run (`idoc plan`, and `idoc train` before it allocates): from the
// model's shape and the train config, the bytes of every store the run holds on its device
// (weights, fp32 masters, gradients, AdamW moments, activations of one micro-batch, logits, the
// KV cache of generation) and the peak, and whether that fits a given memory.
//
// The counts follow this implementation, not a generic formula: parameter stores are simulated
// block by block as their arenas grow (nn/param.c), gradients exist for trainable parameters
// only, and the activation arena holds every tensor a forward allocates plus every gradient the
// backward allocates, since it is a bump allocator reset only after the optimizer step. With
// gradient_checkpointing a checkpointed block keeps its input and output only, and its
// intermediates exist during its own recomputation in backward (nn/autograd.c).
// idoc-requires: yaml pcre2 utf8proc cjson
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nn/heatmap_decoder.h"
#include "nn/qwen_config.h"
#include "stage/config.h"

// What the config does not say: bf16 storage (the weights, gradients and activations in bf16
// with fp32 masters of the trainable parameters) and the data-parallel ranks.
typedef struct {
  bool bf16;
  int world;
} idoc_plan_opts;

// One micro-batch: packed tokens, sequences (one image each), the image grid and heatmaps.
typedef struct {
  int64_t tokens;
  int n_seq;
  int grid_h, grid_w; // patches per image side (before the 2x2 merge); 0: no images
  int maps_per_seq;   // heatmaps the decoder makes per sequence (0 without the decoder)
} idoc_plan_shape;

typedef struct {
  // what was planned
  idoc_plan_shape shape;
  bool bf16, checkpointing, grpo;
  int world, zero_stage;
  int64_t head_chunk; // rows of logits at a time (head_chunk_tokens; the micro-batch when 0)
  int64_t params, trainable;
  // bytes
  double weights, masters, grads, adam, grad_sum; // grad_sum: the step's gradient sum
  double act_vision, act_llm, act_decoder, logits;
  double act_per_token_layer; // one LLM layer's activations + their gradients, per token
  double act;                 // the activation arena's peak (all act_* and logits)
  double reference;           // GRPO with beta > 0: the frozen reference model's weights
  double kv_cache;            // generation (GRPO rollouts, eval)
  double peak;
} idoc_plan;

// The plan of a config: the model from model_name_or_path (preset, config.json file or a
// checkpoint's config.json; the decoder as idoc_model_setup attaches it), the micro-batch at
// its largest (per_device_train_batch_size sequences of cutoff_len tokens, images of
// image_size or image_max_pixels). IDOC_ERR names the key when the model is unknown.
int idoc_plan_config(const idoc_train_config *cfg, const idoc_plan_opts *opt, idoc_plan *p);
// The plan of a given model, decoder (NULL: none) and micro-batch shape.
void idoc_plan_model(const idoc_qwen_config *qc, const idoc_decoder_config *dc,
                     const idoc_train_config *cfg, const idoc_plan_opts *opt,
                     const idoc_plan_shape *shape, idoc_plan *p);

// The memory the run has: the device's when cfg's device is CUDA (0 when none is visible),
// else the host's MemAvailable (/proc/meminfo).
double idoc_plan_available(const idoc_train_config *cfg);
// "80GiB", "24 GB", "512MiB", "1.5T", plain bytes; -1 when it is not a size.
double idoc_plan_parse_size(const char *s);

// The table, then "fits" or "does not fit" against `avail` bytes (<= 0: no verdict).
void idoc_plan_print(FILE *f, const idoc_plan *p, double avail);
// When the plan does not fit, the keys that would make it fit (each re-planned alone, then all
// together) printed to f; returns how many single keys suffice.
int idoc_plan_print_fixes(FILE *f, const idoc_train_config *cfg, const idoc_plan_opts *opt,
                          double avail);
// What `idoc train` runs before a stage allocates anything: IDOC_ERR, with the table and the
// keys that would make it fit printed to stderr, when the plan's peak exceeds the memory
// (idoc_plan_available, or the size in the environment variable IDOC_PLAN_MEM; "off" skips
// the check). No margin is added: the plan is within 10% of the measured peak, and a run
// whose plan just fits is let through rather than refused on a guess.
int idoc_plan_guard(const idoc_train_config *cfg);
