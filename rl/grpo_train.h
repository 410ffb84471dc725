// The GRPO stage: rollouts of G completions per prompt from the current policy (rl/generate.h),
// the heatmap decoder on the generated task tokens, the rewards of rl/rewards.h, group
// advantages and the clipped, KL-regularized loss of rl/grpo_loss.h, with checkpoints that
// resume exactly (weights, optimizer, data cursor, rollout RNG).
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#pragma once
#include "train/config.h"
#include "train/trainer.h"

int idoc_train_grpo(const idoc_train_config *cfg, idoc_stage_result *res);
