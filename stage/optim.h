// AdamW over a parameter store, with global-norm gradient clipping (torch.nn.utils
// clip_grad_norm_ semantics) and the learning-rate schedules of Hugging Face transformers.
#pragma once
#include "nn/param.h"

typedef struct {
  float beta1, beta2, eps, weight_decay;
  float max_grad_norm; // <= 0 disables clipping
} idoc_adamw_cfg;
static const idoc_adamw_cfg IDOC_ADAMW_DEFAULT = {0.9f, 0.999f, 1e-8f, 0.0f, 1.0f};

typedef struct {
  idoc_adamw_cfg cfg;
  int step;            // optimizer steps taken (1-based after the first step)
  int skipped;         // steps refused for a non-finite gradient norm
  idoc_arena *scratch; // small reduction buffers
} idoc_adamw;

// Gives the trainable parameters (freezing is decided by now) their gradient buffers
// (idoc_params_alloc_grads) and moments.
void idoc_adamw_init(idoc_adamw *opt, idoc_adamw_cfg cfg, idoc_params *ps);
// The same without allocating the parameters' moments (the optimizer's owner keeps them: ZeRO-1).
void idoc_adamw_init_sharded(idoc_adamw *opt, idoc_adamw_cfg cfg, idoc_params *ps);
void idoc_adamw_free(idoc_adamw *opt);
// L2 norm over the gradients of all trainable parameters.
float idoc_grad_global_norm(idoc_adamw *opt, idoc_params *ps);
// Clips (if configured) and applies one AdamW step at learning rate lr to every trainable
// parameter; returns the gradient norm before clipping. Gradients are left as they were. When
// that norm is NaN or Inf nothing is changed (no weight, moment or step count): the step is
// skipped and counted in opt->skipped; the caller sees the non-finite norm and decides.
float idoc_adamw_step(idoc_adamw *opt, idoc_params *ps, float lr);
// The pieces of a step, for optimizers that own only part of the state (ZeRO-1, stage/dist.h):
// begin takes the global norm, counts the step (or the skip, returning false for a non-finite
// norm) and gives the clipping scale; update applies AdamW to w (a parameter or a view of
// part of one) with gradient g and moments m, v of the same shape, with p's lr/decay groups.
bool idoc_adamw_begin(idoc_adamw *opt, float norm, float *scale);
void idoc_adamw_update(const idoc_adamw *opt, const idoc_param *p, idoc_tensor *w, idoc_tensor *g,
                       idoc_tensor *m, idoc_tensor *v, float lr, float scale);

typedef enum { IDOC_LR_CONSTANT = 0, IDOC_LR_LINEAR, IDOC_LR_COSINE } idoc_lr_kind;
// Learning rate for 0-based optimizer step `step` of `total`, with `warmup` warmup steps:
// linear ramp from 0, then constant / linear decay to 0 / half-cosine decay to 0
// (transformers' get_{constant,linear,cosine}_schedule_with_warmup).
float idoc_lr_at(idoc_lr_kind kind, float base_lr, int step, int warmup, int total);
// "cosine" / "linear" / "constant" -> kind; IDOC_ERR on anything else.
int idoc_lr_kind_parse(const char *s, idoc_lr_kind *out);
