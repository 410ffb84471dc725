// Batched autoregressive generation for Qwen2.5-VL with a KV cache: rollouts for GRPO and the
// answers of `idoc eval` / `idoc predict`.
//
// Each prompt (with its image) is prefilled once; its K/V are copied to the slots of its G
// completions, which then decode together with those of every other prompt, one token per
// completion per step. Sampling follows transformers' generate(): greedy argmax, or the warpers
// in their order (temperature, then top-k, then top-p) and a multinomial draw. Each completion
// draws from its own generator seeded by (seed, prompt id, completion index), so its tokens do
// not depend on which other prompts or completions share the batch.
//
// On a device, the weights, the KV cache, activations, kept hidden states and the logits stay
// there: the choice runs there too (the sample_tokens kernel, kernels/sample.h, with the CPU's
// algorithm), so per decode step only the fed token ids and each completion's uniform draw go
// up, and its chosen id with two log-probs (12 bytes) comes back. The draws come from the same
// seeded host streams as on the CPU, so the same logits give the same tokens. The vision tower
// runs once per prompt (its prefill), never per completion.
#pragma once
#include "nn/qwen_model.h"

typedef struct {
  const int32_t *ids; // prompt tokens (host), image placeholders expanded
  int n_ids;
  idoc_tensor *pixel_values; // on the host or the model's device; NULL without images
  const int32_t *grid_thw;   // host, n_images x 3
  int n_images;
  const int32_t *forced; // tokens every completion starts with (e.g. "<think> </think>
  int n_forced;          // <answer>" for the fast mode); NULL / 0 for none
  uint64_t id;           // seeds the prompt's completions (e.g. its dataset index)
} idoc_gen_prompt;

typedef struct {
  int group_size;              // completions per prompt (G)
  int first_completion;        // index of the group's first completion, for seeding (a group may be
                               // generated in several calls)
  int max_new_tokens;          // completion length limit, forced tokens included
  bool do_sample;              // false: greedy
  float temperature;           // > 0 when sampling; also the scale of logp_scaled
  int top_k;                   // <= 0: off
  float top_p;                 // in (0, 1]; 1: off
  uint64_t seed;               // with the prompt id and completion index
  const int32_t *stop_ids;     // a completion ends after emitting one of these (kept as its last
  int n_stop;                  // token); see idoc_gen_default_stops
  const int32_t *suppress_ids; // never sampled (logit -inf for the choice only); see
  int n_suppress;              // idoc_gen_vision_suppress
  float repetition_penalty;    // transformers' RepetitionPenaltyLogitsProcessor over the prompt
                               // and completion tokens (the reference inference uses 1.05),
                               // before the warpers; 1: off
  bool keep_hidden;            // return final-norm hidden states of the prompt + completion rows
  bool keep_image_feats;       // return each prompt's vision features
  idoc_qwen_cache *cache;      // reused when given (needs n_prompts * G slots and room for the
                               // longest prompt + max_new_tokens); NULL: allocated per call
} idoc_gen_opts;

// Greedy, G = 1, 256 new tokens, temperature 1, no top-k / top-p / repetition penalty, no stops,
// nothing kept.
void idoc_gen_opts_default(idoc_gen_opts *o);
// Qwen2.5-VL's stop tokens: <|im_end|> and <|endoftext|>, which config.json names
// eos_token_id and bos_token_id (generation_config.json lists both as eos ids). Returns 2.
int idoc_gen_default_stops(const idoc_qwen_config *cfg, int32_t out[2]);
// <|image_pad|> and <|video_pad|>: a completion holding them could not be run through the full
// forward again (it expects vision features for them). Returns 2.
int idoc_gen_vision_suppress(const idoc_qwen_config *cfg, int32_t out[2]);

typedef enum { IDOC_FINISH_STOP = 0, IDOC_FINISH_LENGTH = 1 } idoc_finish;

typedef struct {
  int prompt, index; // prompt (position in the call's list) and completion index (seeding)
  int n_prompt;      // prompt length (hidden rows before the completion)
  int32_t *tokens;   // forced tokens first, then sampled ones; a stop token is the last
  int n_tokens, n_forced;
  // Per-token log-probabilities of the chosen token: logp = log_softmax(logits)[token], the
  // model's own distribution at temperature 1 (what GRPO recomputes for its ratio and KL);
  // logp_scaled = log_softmax(logits / temperature)[token] (TRL's per-token logps), equal to
  // logp when temperature <= 0. Neither includes top-k/top-p, suppression or the repetition
  // penalty.
  float *logp, *logp_scaled;
  idoc_finish finish;
  idoc_tensor *hidden; // [n_prompt + n_tokens, hidden] (keep_hidden), else NULL
} idoc_gen_completion;

typedef struct {
  idoc_gen_completion *c; // n_prompts * G, prompt-major
  int n;
  idoc_tensor **image_feats;  // per prompt [image tokens, hidden] (keep_image_feats); NULL
  int n_prompts;              // entries for prompts without images
  idoc_arena *arena;          // holds hidden states and features (model's device)
  double prefill_s, decode_s; // wall time of the prefills and of the decode loop
  int64_t decode_rows;        // tokens fed through decode steps
  int decode_steps;
} idoc_gen_result;

// Generates G completions for each prompt with model m (any device; its context c provides the
// step memory, which is released again before returning). IDOC_ERR (nothing to free) for bad
// options or prompts, naming the field.
int idoc_generate(idoc_ctx *c, idoc_qwen *m, const idoc_gen_prompt *prompts, int n_prompts,
                  const idoc_gen_opts *o, idoc_gen_result *res);
void idoc_gen_result_free(idoc_gen_result *res);
