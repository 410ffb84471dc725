// The SFT stage (stage 1: answer only; stage 2: CoT + task tokens + heatmap MSE): gradient
// accumulation, LR schedule, logging windows, checkpoints that resume exactly, periodic and
// final eval.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#pragma once
#include "stage/stage.h"

int idoc_train_sft(const idoc_train_config *cfg, idoc_stage_result *res);
