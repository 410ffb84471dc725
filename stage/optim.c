#include "stage/optim.h"

#include <math.h>

#include "kernels/ops.h"

void idoc_adamw_init(idoc_adamw *opt, idoc_adamw_cfg cfg, idoc_params *ps) {
  opt->cfg = cfg;
  opt->step = 0;
  opt->scratch = idoc_arena_new("adamw scratch", ps->dev, 4096);
  idoc_params_alloc_grads(ps);
  idoc_params_init_adam(ps);
}

void idoc_adamw_init_sharded(idoc_adamw *opt, idoc_adamw_cfg cfg, idoc_params *ps) {
  opt->cfg = cfg;
  opt->step = 0;
  opt->skipped = 0;
  opt->scratch = idoc_arena_new("adamw scratch", ps->dev, 4096);
  idoc_params_alloc_grads(ps);
}

void idoc_adamw_free(idoc_adamw *opt) { idoc_arena_free(opt->scratch); }

float idoc_grad_global_norm(idoc_adamw *opt, idoc_params *ps) {
  idoc_arena_reset(opt->scratch);
  idoc_tensor *acc = idoc_tensor_zeros(opt->scratch, IDOC_F32, 0, NULL);
  for (int i = 0; i < ps->n; i++)
    if (ps->p[i].trainable) IDOC_K(ps->dev, sumsq)(acc, ps->p[i].w->grad);
  return sqrtf(idoc_tensor_get(acc, 0));
}

bool idoc_adamw_begin(idoc_adamw *opt, float norm, float *scale) {
  *scale = 1.0f;
  // A NaN/Inf anywhere in the gradients makes the norm non-finite: applying the step would write
  // NaN into every weight and moment (clipping cannot help: the scale is 0 or NaN).
  if (!isfinite(norm)) {
    opt->skipped++;
    return false;
  }
  if (opt->cfg.max_grad_norm > 0) {
    float coef = opt->cfg.max_grad_norm / (norm + 1e-6f);
    if (coef < 1.0f) *scale = coef;
  }
  opt->step++;
  return true;
}

void idoc_adamw_update(const idoc_adamw *opt, const idoc_param *p, idoc_tensor *w, idoc_tensor *g,
                       idoc_tensor *m, idoc_tensor *v, float lr, float scale) {
  IDOC_K(w->dev, adamw_step)
  (w, g, m, v, lr * p->lr_mult, opt->cfg.beta1, opt->cfg.beta2, opt->cfg.eps,
   opt->cfg.weight_decay * p->weight_decay_mult, scale, opt->step);
}

float idoc_adamw_step(idoc_adamw *opt, idoc_params *ps, float lr) {
  float norm = idoc_grad_global_norm(opt, ps), scale;
  if (!idoc_adamw_begin(opt, norm, &scale)) return norm;
  idoc_params_init_adam(ps); // parameters unfrozen since the last step get state
  for (int i = 0; i < ps->n; i++) {
    idoc_param *p = &ps->p[i];
    if (!p->trainable) continue;
    idoc_adamw_update(opt, p, p->w, p->w->grad, p->m, p->v, lr, scale);
  }
  return norm;
}

float idoc_lr_at(idoc_lr_kind kind, float base_lr, int step, int warmup, int total) {
  if (step < warmup) return base_lr * (float)step / (float)(warmup > 1 ? warmup : 1);
  if (kind == IDOC_LR_CONSTANT) return base_lr;
  double span = total - warmup > 1 ? total - warmup : 1;
  double progress = (double)(step - warmup) / span;
  if (kind == IDOC_LR_LINEAR) return (float)(base_lr * fmax(0.0, 1.0 - progress));
  return (float)(base_lr * fmax(0.0, 0.5 * (1.0 + cos(3.14159265358979323846 * progress))));
}

int idoc_lr_kind_parse(const char *s, idoc_lr_kind *out) {
  if (!strcmp(s, "cosine"))
    *out = IDOC_LR_COSINE;
  else if (!strcmp(s, "linear"))
    *out = IDOC_LR_LINEAR;
  else if (!strcmp(s, "constant") || !strcmp(s, "constant_with_warmup"))
    *out = IDOC_LR_CONSTANT;
  else
    return idoc_set_error("unknown lr_scheduler_type '%s' (cosine, linear, constant)", s);
  return IDOC_OK;
}
