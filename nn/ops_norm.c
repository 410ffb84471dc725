// Differentiable RMSNorm, LayerNorm and the channel-wise RMS norm of NCHW maps.
#include "nn/ops_internal.h"

// Row statistics saved for backward: f32 [rows] (or [B, H*W] for the channel norm).
static idoc_tensor *stat_out(idoc_ctx *c, int64_t rows) { return op_out(c, IDOC_F32, 1, &rows); }

static void rmsnorm_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *w = n->in[1];
  K(x, rmsnorm_bwd)(idoc_grad(c, x), idoc_grad(c, w), n->out->grad, x, w, n->saved[0]);
}

idoc_tensor *idoc_rmsnorm(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, float eps) {
  OP_REQUIRE(x->ndim >= 1 && w->ndim == 1 && w->shape[0] == x->shape[x->ndim - 1] &&
                 w->shape[0] > 0,
             "rmsnorm", x, w);
  OP_REQUIRE(x->dtype == w->dtype && idoc_dev_eq(x->dev, w->dev), "rmsnorm", x, w);
  idoc_tensor *y = op_out_like(c, x), *rstd = stat_out(c, idoc_numel(x) / w->shape[0]);
  K(x, rmsnorm_fwd)(y, rstd, x, w, eps);
  idoc_tensor *in[2] = {x, w};
  if (idoc_needs_grad(c, in, 2)) idoc_record(c, "rmsnorm", rmsnorm_bw, y, in, 2)->saved[0] = rstd;
  return y;
}

static void layernorm_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  K(x, layernorm_bwd)
  (idoc_grad(c, x), idoc_grad(c, w), idoc_grad(c, b), n->out->grad, x, w, n->saved[0], n->saved[1]);
}

// w and b may each be NULL (no affine scale / shift).
idoc_tensor *idoc_layernorm(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b,
                            float eps) {
  OP_REQUIRE(x->ndim >= 1 && x->shape[x->ndim - 1] > 0, "layernorm", x);
  int64_t ch = x->shape[x->ndim - 1];
  idoc_tensor *affine[2] = {w, b};
  for (int i = 0; i < 2; i++) {
    idoc_tensor *p = affine[i];
    if (!p) continue;
    OP_REQUIRE(p->ndim == 1 && p->shape[0] == ch, "layernorm", x, p);
    OP_REQUIRE(x->dtype == p->dtype && idoc_dev_eq(x->dev, p->dev), "layernorm", x, p);
  }
  idoc_tensor *y = op_out_like(c, x), *mean = stat_out(c, idoc_numel(x) / ch);
  idoc_tensor *rstd = stat_out(c, idoc_numel(x) / ch);
  K(x, layernorm_fwd)(y, mean, rstd, x, w, b, eps);
  idoc_tensor *in[3] = {x, w, b};
  if (idoc_needs_grad(c, in, 3)) {
    idoc_node *n = idoc_record(c, "layernorm", layernorm_bw, y, in, 3);
    n->saved[0] = mean;
    n->saved[1] = rstd;
  }
  return y;
}

static void rmsnorm_channels_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *s = n->in[1];
  K(x, rmsnorm_channels_bwd)(idoc_grad(c, x), idoc_grad(c, s), n->out->grad, x, s, n->saved[0]);
}

idoc_tensor *idoc_rmsnorm_channels(idoc_ctx *c, idoc_tensor *x, idoc_tensor *scale, float eps) {
  OP_REQUIRE(x->ndim == 4 && scale->ndim == 1 && scale->shape[0] == x->shape[1] && x->shape[1] > 0,
             "rmsnorm_channels", x, scale);
  OP_REQUIRE(x->dtype == scale->dtype && idoc_dev_eq(x->dev, scale->dev), "rmsnorm_channels", x,
             scale);
  int64_t rs[2] = {x->shape[0], x->shape[2] * x->shape[3]};
  idoc_tensor *y = op_out_like(c, x), *rstd = op_out(c, IDOC_F32, 2, rs);
  K(x, rmsnorm_channels_fwd)(y, rstd, x, scale, eps);
  idoc_tensor *in[2] = {x, scale};
  if (idoc_needs_grad(c, in, 2))
    idoc_record(c, "rmsnorm_channels", rmsnorm_channels_bw, y, in, 2)->saved[0] = rstd;
  return y;
}
