// Differentiable linear layer, batched matmul and embedding.
#include "nn/ops_internal.h"

static void linear_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  K(x, linear_bwd)(idoc_grad(c, x), idoc_grad(c, w), idoc_grad(c, b), n->out->grad, x, w);
}

idoc_tensor *idoc_linear(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b) {
  OP_REQUIRE(w->ndim == 2 && x->ndim >= 1 && x->shape[x->ndim - 1] == w->shape[1], "linear", x, w);
  OP_REQUIRE(!b || (b->ndim == 1 && b->shape[0] == w->shape[0]), "linear", w, b);
  OP_REQUIRE(x->dtype == w->dtype && idoc_dev_eq(x->dev, w->dev), "linear", x, w);
  int64_t shape[IDOC_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++)
    shape[i] = x->shape[i];
  shape[x->ndim - 1] = w->shape[0];
  idoc_tensor *y = op_out(c, x->dtype, x->ndim, shape);
  K(x, linear_fwd)(y, x, w, b);
  idoc_tensor *in[3] = {x, w, b};
  if (idoc_needs_grad(c, in, 3)) idoc_record(c, "linear", linear_bw, y, in, 3);
  return y;
}

// d(op(A) op(B)) for C = op(A) op(B):
//   dA = dC op(B)^T (or its transpose when A is transposed), dB likewise.
static void matmul_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *a = n->in[0], *b = n->in[1], *dc = n->out->grad;
  bool ta = n->i[0], tb = n->i[1];
  idoc_tensor *da = idoc_grad(c, a), *db = idoc_grad(c, b);
  if (da) {
    if (!ta)
      K(a, matmul)(da, dc, b, false, !tb, true); // dA = dC op(B)^T
    else
      K(a, matmul)(da, b, dc, tb, true, true); // dA = op(B) dC^T
  }
  if (db) {
    if (!tb)
      K(b, matmul)(db, a, dc, !ta, false, true); // dB = op(A)^T dC
    else
      K(b, matmul)(db, dc, a, true, ta, true); // dB = dC^T op(A)
  }
}

idoc_tensor *idoc_matmul(idoc_ctx *c, idoc_tensor *a, idoc_tensor *b, bool trans_a, bool trans_b) {
  OP_REQUIRE((a->ndim == 2 || a->ndim == 3) && a->ndim == b->ndim, "matmul", a, b);
  OP_REQUIRE(a->ndim == 2 || a->shape[0] == b->shape[0], "matmul", a, b);
  OP_REQUIRE(a->dtype == b->dtype && idoc_dev_eq(a->dev, b->dev), "matmul", a, b);
  int r = a->ndim - 2;
  int64_t m = trans_a ? a->shape[r + 1] : a->shape[r], ka = trans_a ? a->shape[r] : a->shape[r + 1];
  int64_t kb = trans_b ? b->shape[r + 1] : b->shape[r],
          nn = trans_b ? b->shape[r] : b->shape[r + 1];
  OP_REQUIRE(ka == kb, "matmul", a, b);
  int64_t shape[3] = {a->shape[0], m, nn};
  idoc_tensor *o = a->ndim == 3 ? op_out(c, a->dtype, 3, shape) : op_out(c, a->dtype, 2, shape + 1);
  K(a, matmul)(o, a, b, trans_a, trans_b, false);
  idoc_tensor *in[2] = {a, b};
  if (idoc_needs_grad(c, in, 2)) {
    idoc_node *n = idoc_record(c, "matmul", matmul_bw, o, in, 2);
    n->i[0] = trans_a;
    n->i[1] = trans_b;
  }
  return o;
}

static void embedding_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dt = idoc_grad(c, n->in[0]);
  if (dt) K(dt, embedding_bwd)(dt, n->out->grad, n->in[1]);
}

idoc_tensor *idoc_embedding(idoc_ctx *c, idoc_tensor *table, idoc_tensor *ids) {
  OP_REQUIRE(table->ndim == 2 && ids->dtype == IDOC_I32 && ids->ndim < IDOC_MAX_DIMS, "embedding",
             table, ids);
  OP_REQUIRE(idoc_dev_eq(table->dev, ids->dev), "embedding", table, ids);
  int64_t shape[IDOC_MAX_DIMS];
  for (int i = 0; i < ids->ndim; i++)
    shape[i] = ids->shape[i];
  shape[ids->ndim] = table->shape[1];
  idoc_tensor *o = op_out(c, table->dtype, ids->ndim + 1, shape);
  K(table, embedding_fwd)(o, table, ids);
  idoc_tensor *in[2] = {table, ids};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "embedding", embedding_bw, o, in, 2);
  return o;
}
