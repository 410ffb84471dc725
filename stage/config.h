// Training configuration: LLaMA-Factory-style keys read from YAML, overridden by `key=value`
// arguments, validated, and saved with every checkpoint (training_args.yaml).
//
// A config file is one YAML mapping. Nested mappings flatten to dotted keys (`reward:` with
// `format: 0.5` under it is `reward.format`). Unknown keys, wrong types and out-of-range
// values are errors naming the file and the key. A pipeline file instead holds
// `pipeline: [a.yaml, b.yaml, ...]` (paths relative to the pipeline file) and runs the stages
// in order; see idoc_pipeline_load.
// idoc-requires: yaml
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "kernels/tensor.h"

#define IDOC_CFG_MAX_REWARDS 32

typedef enum { IDOC_STAGE_SFT = 0, IDOC_STAGE_GRPO } idoc_stage_kind;
typedef enum { IDOC_TARGET_ANSWER = 0, IDOC_TARGET_COT } idoc_sft_target;

typedef struct {
  // --- model
  char *model_name_or_path; // preset (tiny, 3b, 7b) or checkpoint directory
  char *tokenizer;          // tokenizer.json; empty: the model directory's, or the tiny one
  char *decoder;            // auto | none | tiny | release (layout of a freshly attached decoder)
  bool task_tokens;         // the answer carries <|mis|>/<|art|> and the decoder reads them
  bool gradient_checkpointing;
  int head_chunk_tokens; // > 0: the LM head and its loss run this many rows at a time
  bool bf16;    // the Qwen2.5-VL part in bf16 on a CUDA device, fp32 masters (stage/dist.c)
  char *device; // cpu | cuda | cuda:N: where parameters, activations and the optimizer live
  // --- method
  idoc_stage_kind stage;
  idoc_sft_target target;
  bool freeze_vision_tower, freeze_multi_modal_projector, freeze_language_model, freeze_decoder;
  float heatmap_weight;
  float decoder_lr_ratio; // the decoder's learning rate = learning_rate x this
  bool response_look;     // keep the box list in <think> (off: "w/o look")
  bool response_think;    // keep the reasoning in <think> (off: "w/o think")
  // --- data
  char *dataset, *eval_dataset; // HDF5 split files
  int max_samples, eval_max_samples;
  int cutoff_len;
  int image_size; // > 0: images resized to this square (as the GRPO reference's 512x512)
  int image_max_pixels, image_min_pixels;
  int seed, data_seed;
  // --- optimisation
  float learning_rate, weight_decay, adam_beta1, adam_beta2, adam_epsilon, max_grad_norm;
  char *lr_scheduler_type;
  float warmup_ratio;
  int warmup_steps;
  float num_train_epochs;
  int max_steps;
  int per_device_train_batch_size, gradient_accumulation_steps;
  // --- output
  char *output_dir;
  int logging_steps, eval_steps, save_steps, save_total_limit;
  int max_nonfinite_steps;      // NaN guard: stop after this many skipped steps in a row
  char *resume_from_checkpoint; // "" none, "true"/"latest" newest in output_dir, or a path
  bool plot_loss, overwrite_output_dir;
  char *dump_batches; // "": off; else a folder for the inputs of every step (stage/dump.h)
  // --- distributed (data parallel over the job's ranks, stage/dist.h)
  int zero_stage;        // 0: replicated optimizer; 1: AdamW moments sharded across ranks (ZeRO-1)
  float ddp_timeout;     // seconds without progress that end the job (nn/comm.h)
  int ddp_bucket_cap_mb; // gradient all-reduce bucket size
  // "auto" | "fp64" | "fp32": the dtype a step's gradients are summed in over micro-batches and
  // ranks (fp64: the run does not depend on the split, 8 bytes per trainable parameter more).
  char *grad_sum_dtype;
  // --- evaluation / generation
  int max_new_tokens;
  bool eval_fast; // prefill "<think> </think> <answer>" (the paper's ImageDoctor-fast)
  // --- GRPO
  int num_generations, num_iterations, max_completion_length;
  float beta, epsilon, epsilon_high, temperature, top_p;
  int top_k;
  char *loss_type;         // grpo (per-sequence token mean) | bnpo (token mean) | dr_grpo
  bool scale_rewards;      // divide advantages by the group std
  float advantage_epsilon; // added to the std
  float std_filter_tau;    // < 0: off; else drop groups with reward std <= tau
  float entropy_top_rho;   // 1: off; else policy gradient only on the top-rho entropy tokens
  float entropy_coef;
  int completions_log_steps;
  // `reward.KEY: VALUE` settings in order, checked and applied by idoc_grpo_reward_config
  // (rl/grpo_train.h) with idoc_reward_config_set (rl/rewards.h):
  // NAME or NAME.weight, NAME.enabled, score_variant, gaussian_sigma, ...
  int n_reward_settings;
  char *reward_keys[IDOC_CFG_MAX_REWARDS];
  char *reward_values[IDOC_CFG_MAX_REWARDS];
  char *reward_where[IDOC_CFG_MAX_REWARDS]; // "FILE: line N" or "command line", for errors
  // --- where it came from
  char *source; // the file (or "defaults")
} idoc_train_config;

// Defaults (LLaMA-Factory / HF TrainingArguments defaults where they exist).
void idoc_config_defaults(idoc_train_config *c);
// Reads `path` over the defaults. IDOC_ERR names the file, line and key.
int idoc_config_load(const char *path, idoc_train_config *c);
// Applies one "key=value" override (the source for errors is "command line").
int idoc_config_set(idoc_train_config *c, const char *assignment);
// Cross-key checks (ranges, stage/target agreement). Called by load; call again after set.
int idoc_config_validate(const idoc_train_config *c);
// The effective config as YAML text (malloc'ed); loading it gives the same config.
char *idoc_config_to_yaml(const idoc_train_config *c);
int idoc_config_save(const idoc_train_config *c, const char *path); // atomic
void idoc_config_free(idoc_train_config *c);
void idoc_config_copy(idoc_train_config *dst, const idoc_train_config *src);
// The `device` key's value is parsed by idoc_device_parse (kernels/tensor.h); idoc_stage_device
// checks that the device exists.
// Whether a step's gradients are summed in fp64 (grad_sum_dtype fp64, or auto off a GPU).
bool idoc_config_grad_sum_fp64(const idoc_train_config *c, bool on_gpu);
// Prints every key with its type and default (for `idoc train --help-keys`).
void idoc_config_print_keys(void);

// A pipeline: the stage config files of `pipeline:` in order (absolute or relative to the
// pipeline file's folder). A file without `pipeline:` is a pipeline of itself.
typedef struct {
  int n;
  char **files;
} idoc_pipeline;
int idoc_pipeline_load(const char *path, idoc_pipeline *p);
void idoc_pipeline_free(idoc_pipeline *p);
