// The GRPO stage: rollouts of G completions per prompt from the current policy (nn/generate.h),
// the heatmap decoder on the generated task tokens, the rewards of rl/rewards.h, group
// advantages and the clipped, KL-regularized loss of rl/grpo_loss.h, with checkpoints that
// resume exactly (weights, optimizer, data cursor, rollout RNG).
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#pragma once
#include "rl/rewards.h"
#include "stage/config.h"
#include "stage/stage.h"

int idoc_train_grpo(const idoc_train_config *cfg, idoc_stage_result *res);
// The reward settings of cfg (`reward.*` keys) over the defaults; an unknown reward or a bad
// value is an error naming where the key was set. Every stage's config is checked with it
// before a pipeline starts, so a typo fails before any training.
int idoc_grpo_reward_config(const idoc_train_config *cfg, idoc_reward_config *out);
