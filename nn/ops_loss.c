// Differentiable losses and reductions.
#include "nn/ops_internal.h"

static void ce_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *logits = n->in[0], *dl = idoc_grad(c, logits);
  // dL/dlogits = dout / n_kept * (softmax - onehot), dout read where it lives (on the device).
  if (dl) K(logits, cross_entropy_mean_bwd)
  (dl, logits, n->saved[0], n->in[1], (int)n->i[0], n->out->grad, (float)n->f[0]);
}

int64_t op_ce_kept(idoc_ctx *c, idoc_tensor **targets, int ignore_index, const idoc_tensor *on) {
  // One int per token on the host; host targets are then uploaded once. Device targets are
  // read back for the count: callers that can pass host targets.
  const int32_t *t = idoc_ctx_host_view(c, *targets);
  int64_t kept = 0, n = idoc_numel(*targets);
  for (int64_t i = 0; i < n; i++)
    kept += t[i] != ignore_index;
  if (!idoc_dev_eq((*targets)->dev, on->dev)) *targets = idoc_ctx_on_device(c, *targets);
  return kept;
}

idoc_tensor *op_ce_mean(idoc_ctx *c, const idoc_tensor *on, const idoc_tensor *losses,
                        int64_t kept) {
  idoc_tensor *sum = op_scalar(c), *loss = op_scalar(c);
  K(on, sum)(sum, losses);
  K(on, scale_fwd)(loss, sum, kept ? 1.0f / (float)kept : 0.0f);
  return loss;
}

idoc_tensor *idoc_cross_entropy(idoc_ctx *c, idoc_tensor *logits, idoc_tensor *targets,
                                int ignore_index) {
  OP_REQUIRE(logits->ndim == 2 && targets->dtype == IDOC_I32 &&
                 idoc_numel(targets) == logits->shape[0],
             "cross_entropy", logits, targets);
  OP_REQUIRE(idoc_dev_eq(logits->dev, targets->dev) ||
                 (targets->dev.kind == IDOC_CPU && idoc_dev_eq(logits->dev, c->dev)),
             "cross_entropy (targets on the logits' device or the host)", logits, targets);
  int64_t n = logits->shape[0], kept = op_ce_kept(c, &targets, ignore_index, logits);
  idoc_tensor *losses = op_out(c, IDOC_F32, 1, &n), *lse = op_out(c, IDOC_F32, 1, &n);
  K(logits, cross_entropy_fwd)(losses, lse, logits, targets, ignore_index);
  idoc_tensor *loss = op_ce_mean(c, logits, losses, kept);
  idoc_tensor *in[2] = {logits, targets};
  if (idoc_needs_grad(c, in, 1)) {
    idoc_node *nd = idoc_record(c, "cross_entropy", ce_bw, loss, in, 2);
    nd->saved[0] = lse;
    nd->f[0] = (double)kept;
    nd->i[0] = ignore_index;
  }
  return loss;
}

static void mse_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *p = n->in[0], *dp = idoc_grad(c, p);
  if (dp) K(p, sq_diff_mean_bwd)(dp, p, n->in[1], n->out->grad, (float)idoc_numel(p));
}

idoc_tensor *idoc_mse(idoc_ctx *c, idoc_tensor *pred, idoc_tensor *target) {
  OP_REQUIRE(idoc_numel(pred) == idoc_numel(target) && pred->dtype == target->dtype &&
                 idoc_numel(pred) > 0 && idoc_dev_eq(pred->dev, target->dev),
             "mse", pred, target);
  idoc_tensor *s = op_scalar(c), *loss = op_scalar(c);
  K(pred, sq_diff_sum)(s, pred, target);
  K(pred, scale_fwd)(loss, s, 1.0f / (float)idoc_numel(pred));
  idoc_tensor *in[2] = {pred, target};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "mse", mse_bw, loss, in, 2);
  return loss;
}

static void sum_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dx = idoc_grad(c, n->in[0]);
  if (dx) K(dx, fill_grad)(dx, n->out->grad, (float)n->f[0]);
}

static idoc_tensor *reduce(idoc_ctx *c, idoc_tensor *x, float s, const char *name) {
  idoc_tensor *y = op_scalar(c);
  K(x, sum)(y, x);
  if (s != 1.0f) K(x, scale_fwd)(y, y, s);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, name, sum_bw, y, in, 1)->f[0] = s;
  return y;
}

idoc_tensor *idoc_sum(idoc_ctx *c, idoc_tensor *x) { return reduce(c, x, 1.0f, "sum"); }
idoc_tensor *idoc_mean(idoc_ctx *c, idoc_tensor *x) {
  OP_REQUIRE(idoc_numel(x) > 0, "mean", x);
  return reduce(c, x, 1.0f / (float)idoc_numel(x), "mean");
}
