// Differentiable add, mul (with broadcast of b over a's leading dims) and scale.
#include "nn/ops_internal.h"

// b repeats over a's leading elements: a is viewed as [numel(a) / numel(b), numel(b)], so b
// may be a trailing slice of a's shape or a whole number of its rows (tiling).
static void check_bcast(const char *op, idoc_tensor *a, idoc_tensor *b) {
  int64_t na = idoc_numel(a), nb = idoc_numel(b);
  OP_REQUIRE(a->dtype == b->dtype && idoc_dev_eq(a->dev, b->dev), op, a, b);
  OP_REQUIRE(nb > 0 && na % nb == 0, op, a, b);
  OP_REQUIRE(nb == 1 || a->ndim == 0 || b->ndim == 0 ||
                 b->shape[b->ndim - 1] == a->shape[a->ndim - 1],
             op, a, b);
}

static void add_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dy = n->out->grad;
  K(dy, add_bwd)(idoc_grad(c, n->in[0]), idoc_grad(c, n->in[1]), dy);
}

idoc_tensor *idoc_add(idoc_ctx *c, idoc_tensor *a, idoc_tensor *b) {
  check_bcast("add", a, b);
  idoc_tensor *y = op_out_like(c, a);
  K(a, add_fwd)(y, a, b);
  idoc_tensor *in[2] = {a, b};
  if (idoc_needs_grad(c, in, 2)) idoc_record(c, "add", add_bw, y, in, 2);
  return y;
}

static void mul_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dy = n->out->grad;
  K(dy, mul_bwd)(idoc_grad(c, n->in[0]), idoc_grad(c, n->in[1]), dy, n->in[0], n->in[1]);
}

idoc_tensor *idoc_mul(idoc_ctx *c, idoc_tensor *a, idoc_tensor *b) {
  check_bcast("mul", a, b);
  idoc_tensor *y = op_out_like(c, a);
  K(a, mul_fwd)(y, a, b);
  idoc_tensor *in[2] = {a, b};
  if (idoc_needs_grad(c, in, 2)) idoc_record(c, "mul", mul_bw, y, in, 2);
  return y;
}

static void scale_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dx = idoc_grad(c, n->in[0]);
  if (dx) K(dx, axpy)(dx, n->out->grad, (float)n->f[0]);
}

idoc_tensor *idoc_scale(idoc_ctx *c, idoc_tensor *x, float s) {
  idoc_tensor *y = op_out_like(c, x);
  K(x, scale_fwd)(y, x, s);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "scale", scale_bw, y, in, 1)->f[0] = s;
  return y;
}
