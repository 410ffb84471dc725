// Evaluation of a model on a held-out split: greedy generation of each sample's answer (with
// the paper's "fast" mode that prefills "<think> </think> <answer>"), score parsing, the heatmap
// decoder on the generated task tokens, and the metrics of train/metrics.h: PLCC/SRCC per
// dimension, heatmap MSE (all, GT=0), CC, KLD, SIM, NSS, AUC-Judd. Results go to
// OUT/eval_results.json (all tags) and a line in the trainer log; the table is printed.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#pragma once
#include <stdio.h>

#include "train/config.h"
#include "train/metrics.h"
#include "train/model_setup.h"

// cot: the prompt asks for the stage-2 answer (think block); otherwise stage 1's.
// result may be NULL. Uses cfg->eval_dataset, eval_max_samples, max_new_tokens, eval_fast.
int idoc_evaluate_model(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                        const char *out_dir, const char *tag, FILE *logf, idoc_eval_result *result);
