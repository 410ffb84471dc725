// Differentiable reshape, concat, slice, row gather/scatter and transpose.
#include "nn/ops_internal.h"

static void reshape_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *dy = n->out->grad;
  if (!x->requires_grad) return;
  if (!x->grad && !x->name) { // first gradient of an activation: share dy's storage
    x->grad = idoc_tensor_view(c->act, dy, x->ndim, x->shape);
    return;
  }
  K(dy, axpy)(idoc_tensor_view(c->act, idoc_grad(c, x), dy->ndim, dy->shape), dy, 1.0f);
}

idoc_tensor *idoc_reshape(idoc_ctx *c, idoc_tensor *x, int ndim, const int64_t *shape) {
  idoc_tensor *y = idoc_tensor_view(c->act, x, ndim, shape);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "reshape", reshape_bw, y, in, 1);
  return y;
}

static void cast_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dy = n->out->grad, *dx = idoc_grad(c, n->in[0]);
  if (dx) K(dy, axpy)(dx, dy, 1.0f);
}

idoc_tensor *idoc_cast(idoc_ctx *c, idoc_tensor *x, idoc_dtype dt) {
  if (x->dtype == dt) return x;
  idoc_tensor *y = idoc_tensor_new(c->act, dt, x->ndim, x->shape);
  idoc_tensor_convert(y, x);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "cast", cast_bw, y, in, 1);
  return y;
}

static void concat_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor **xs = n->p, *dy = n->out->grad;
  int dim = (int)n->i[0];
  int64_t off = 0;
  for (int k = 0; k < (int)n->i[1]; k++) {
    idoc_tensor *g = idoc_grad(c, xs[k]);
    if (g) K(dy, slice_copy)(g, 0, dy, off, dim, xs[k]->shape[dim], true);
    off += xs[k]->shape[dim];
  }
}

idoc_tensor *idoc_concat(idoc_ctx *c, idoc_tensor *const *xs, int n, int dim) {
  OP_REQUIRE(n >= 1 && dim >= 0 && dim < xs[0]->ndim, "concat", xs[0]);
  int64_t shape[IDOC_MAX_DIMS], total = 0;
  for (int k = 0; k < n; k++) {
    OP_REQUIRE(xs[k]->ndim == xs[0]->ndim && xs[k]->dtype == xs[0]->dtype &&
                   idoc_dev_eq(xs[k]->dev, xs[0]->dev),
               "concat", xs[0], xs[k]);
    for (int d = 0; d < xs[0]->ndim; d++)
      OP_REQUIRE(d == dim || xs[k]->shape[d] == xs[0]->shape[d], "concat", xs[0], xs[k]);
    total += xs[k]->shape[dim];
  }
  memcpy(shape, xs[0]->shape, sizeof shape);
  shape[dim] = total;
  idoc_tensor *y = op_out(c, xs[0]->dtype, xs[0]->ndim, shape);
  int64_t off = 0;
  bool grad = false;
  for (int k = 0; k < n; k++) {
    K(y, slice_copy)(y, off, xs[k], 0, dim, xs[k]->shape[dim], false);
    off += xs[k]->shape[dim];
    grad |= idoc_needs_grad(c, &xs[k], 1);
  }
  if (grad) {
    idoc_node *nd = idoc_record(c, "concat", concat_bw, y, NULL, 0);
    nd->p = idoc_save_bytes(c, xs, (size_t)n * sizeof *xs);
    nd->i[0] = dim;
    nd->i[1] = n;
  }
  return y;
}

static void slice_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *g = idoc_grad(c, n->in[0]), *dy = n->out->grad;
  if (g) K(dy, slice_copy)(g, n->i[1], dy, 0, (int)n->i[0], n->i[2], true);
}

idoc_tensor *idoc_slice(idoc_ctx *c, idoc_tensor *x, int dim, int64_t start, int64_t len) {
  OP_REQUIRE(dim >= 0 && dim < x->ndim && start >= 0 && len >= 0 && start + len <= x->shape[dim],
             "slice", x);
  int64_t shape[IDOC_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[dim] = len;
  idoc_tensor *y = op_out(c, x->dtype, x->ndim, shape);
  K(x, slice_copy)(y, 0, x, start, dim, len, false);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) {
    idoc_node *n = idoc_record(c, "slice", slice_bw, y, in, 1);
    n->i[0] = dim;
    n->i[1] = start;
    n->i[2] = len;
  }
  return y;
}

static void gather_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *g = idoc_grad(c, n->in[0]), *dy = n->out->grad;
  if (g) K(dy, scatter_rows)(g, dy, n->in[1], true);
}

idoc_tensor *idoc_gather_rows(idoc_ctx *c, idoc_tensor *x, idoc_tensor *idx) {
  OP_REQUIRE(x->ndim >= 1 && idx->dtype == IDOC_I32 && idoc_dev_eq(x->dev, idx->dev), "gather_rows",
             x, idx);
  int64_t shape[IDOC_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[0] = idoc_numel(idx);
  idoc_tensor *y = op_out(c, x->dtype, x->ndim, shape);
  K(x, gather_rows)(y, x, idx, false);
  idoc_tensor *in[2] = {x, idx};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "gather_rows", gather_bw, y, in, 2);
  return y;
}

static void scatter_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *gb = idoc_grad(c, n->in[0]), *gs = idoc_grad(c, n->in[1]), *dy = n->out->grad;
  if (gb) { // base: dy with the replaced rows zeroed
    idoc_arena_mark m = idoc_arena_get_mark(c->act);
    idoc_tensor *t = idoc_tensor_like(c->act, dy);
    idoc_tensor_copy(t, dy);
    K(dy, zero_rows)(t, n->in[2]);
    K(dy, axpy)(gb, t, 1.0f);
    idoc_arena_reset_to(c->act, m);
  }
  if (gs) K(dy, gather_rows)(gs, dy, n->in[2], true);
}

idoc_tensor *idoc_scatter_rows(idoc_ctx *c, idoc_tensor *base, idoc_tensor *src, idoc_tensor *idx) {
  OP_REQUIRE(base->ndim >= 1 && src->ndim >= 1 && base->dtype == src->dtype &&
                 idx->dtype == IDOC_I32 && idoc_dev_eq(base->dev, src->dev) &&
                 idoc_dev_eq(base->dev, idx->dev) && src->shape[0] == idoc_numel(idx) &&
                 idoc_inner(src, 1) == idoc_inner(base, 1),
             "scatter_rows", base, src, idx);
  idoc_tensor *y = op_out_like(c, base);
  idoc_tensor_copy(y, base);
  K(y, scatter_rows)(y, src, idx, false);
  idoc_tensor *in[3] = {base, src, idx};
  if (idoc_needs_grad(c, in, 2)) idoc_record(c, "scatter_rows", scatter_bw, y, in, 3);
  return y;
}

static void transpose_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *g = idoc_grad(c, n->in[0]), *dy = n->out->grad;
  if (g) K(dy, transpose)(g, dy, true);
}

idoc_tensor *idoc_transpose(idoc_ctx *c, idoc_tensor *x) {
  OP_REQUIRE(x->ndim == 2 || x->ndim == 3, "transpose", x);
  int64_t shape[3];
  int nd = x->ndim;
  memcpy(shape, x->shape, (size_t)nd * sizeof *shape);
  shape[nd - 2] = x->shape[nd - 1];
  shape[nd - 1] = x->shape[nd - 2];
  idoc_tensor *y = op_out(c, x->dtype, nd, shape);
  K(x, transpose)(y, x, false);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "transpose", transpose_bw, y, in, 1);
  return y;
}
