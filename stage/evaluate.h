// Evaluation of a model on a held-out split: greedy generation of each sample's answer (with
// the paper's "fast" mode that prefills "<think> </think> <answer>"), score parsing, the heatmap
// decoder on the generated task tokens, and the metrics of stage/metrics.h: PLCC/SRCC per
// dimension, heatmap MSE (all, GT=0), CC, KLD, SIM, NSS, AUC-Judd. Results go to
// OUT/eval_results.json (all tags) and a line in the trainer log; the table is printed.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#pragma once
#include <stdio.h>

#include "data/imagedoctor_text.h"
#include "nn/generate.h"
#include "stage/config.h"
#include "stage/metrics.h"
#include "stage/model_setup.h"
#include "stage/sft_example.h"

// The paper's ImageDoctor-fast: the answer starts right away after an empty think block.
#define IDOC_FAST_PREFIX "<think> </think> <answer>"

// cot: the prompt asks for the stage-2 answer (think block); otherwise stage 1's.
// result may be NULL. Uses cfg->eval_dataset, eval_max_samples, max_new_tokens, eval_fast.
int idoc_evaluate_model(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                        const char *out_dir, const char *tag, FILE *logf, idoc_eval_result *result);

// One judged example: the completion and the heatmaps of its task tokens.
typedef struct {
  char *text;                  // completion (forced prefix included), special tokens kept
  float *map[2];               // [0] misalignment, [1] artifact at decoder resolution, or NULL
  int map_h, map_w, n_tokens;  // generated tokens
  idoc_parsed_response parsed; // of text
} idoc_judged;
void idoc_judged_free(idoc_judged *j);
// Greedy generation (nn/generate.h, KV cache) for one example after the forced `prefix`, then
// the decoder on the hidden states that predicted the first <|mis|> and <|art|> (spec 5.4: the
// state one position before).
int idoc_judge(idoc_ctx *c, idoc_model_bundle *mb, idoc_qwen_cache *kv, const idoc_sft_example *ex,
               const int32_t *prefix, int n_prefix, int max_new, idoc_judged *out);
// The token ids of IDOC_FAST_PREFIX when `fast` (malloc'ed, *n of them), else NULL.
int32_t *idoc_fast_prefix(idoc_tokenizer *tok, bool fast, int *n);
