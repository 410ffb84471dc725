// Differentiable rotary embedding and variable-length multi-head attention.
#include "nn/ops_internal.h"

static void rotary_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dx = idoc_grad(c, n->in[0]), *dy = n->out->grad;
  if (!dx) return;
  // The rotation is orthogonal: its backward is the inverse rotation of dy, added into dx.
  idoc_arena_mark m = idoc_arena_get_mark(c->act);
  idoc_tensor *t = idoc_tensor_like(c->act, dy);
  K(dy, rotary)(t, dy, n->in[1], n->in[2], (int)n->i[0], true);
  K(dy, axpy)(dx, t, 1.0f);
  idoc_arena_reset_to(c->act, m);
}

idoc_tensor *idoc_rotary(idoc_ctx *c, idoc_tensor *x, idoc_tensor *cos, idoc_tensor *sin,
                         int n_heads) {
  OP_REQUIRE(x->ndim == 2 && cos->ndim == 2 && idoc_same_shape(cos, sin) &&
                 cos->shape[0] == x->shape[0] && n_heads > 0 &&
                 x->shape[1] == 2 * cos->shape[1] * n_heads && cos->dtype == x->dtype,
             "rotary", x, cos, sin);
  idoc_tensor *y = op_out_like(c, x);
  K(x, rotary)(y, x, cos, sin, n_heads, false);
  idoc_tensor *in[3] = {x, cos, sin};
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "rotary", rotary_bw, y, in, 3)->i[0] = n_heads;
  return y;
}

idoc_segments idoc_segments_new(idoc_ctx *c, const int32_t *cu, int n_seg) {
  IDOC_CHECK(n_seg >= 1 && cu && cu[0] == 0, "segments: %d segment(s), offsets must start at 0",
             n_seg);
  for (int s = 0; s < n_seg; s++)
    IDOC_CHECK(cu[s + 1] >= cu[s], "segments: offset %d (%d) is below offset %d (%d)", s + 1,
               cu[s + 1], s, cu[s]);
  idoc_segments g = {NULL, idoc_tensor_1d(c->act, IDOC_I32, n_seg + 1), n_seg};
  g.cu = idoc_save_bytes(c, cu, (size_t)(n_seg + 1) * sizeof *cu);
  idoc_tensor_from_host(g.dev, g.cu); // the one upload; every layer reuses it
  return g;
}

static void attention_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
  K(q, attention_bwd)
  (idoc_grad(c, q), idoc_grad(c, k), idoc_grad(c, v), n->out->grad, n->out, n->saved[0], q, k, v,
   n->saved[1], n->saved[2], (int)n->i[0], (int)n->i[1], n->i[2] != 0, (float)n->f[0]);
}

idoc_tensor *idoc_attention(idoc_ctx *c, idoc_tensor *q, idoc_tensor *k, idoc_tensor *v,
                            const idoc_segments *sq, const idoc_segments *sk, int n_heads,
                            int n_kv_heads, bool causal, float scale) {
  OP_REQUIRE(q->ndim == 2 && k->ndim == 2 && idoc_same_shape(k, v) && n_heads > 0 &&
                 n_kv_heads > 0 && n_heads % n_kv_heads == 0 && q->shape[1] % n_heads == 0,
             "attention", q, k, v);
  int64_t d = q->shape[1] / n_heads;
  OP_REQUIRE(k->shape[1] == d * n_kv_heads && q->dtype == k->dtype && k->dtype == v->dtype,
             "attention", q, k, v);
  int n_seg = sq->n_seg;
  OP_REQUIRE(sk->n_seg == n_seg && sq->cu[n_seg] == q->shape[0] && sk->cu[n_seg] == k->shape[0],
             "attention (segment offsets must cover q and k)", q, k, sq->dev, sk->dev);
  OP_REQUIRE(idoc_dev_eq(sq->dev->dev, q->dev) && idoc_dev_eq(sk->dev->dev, q->dev),
             "attention (segments on q's device)", q, sq->dev, sk->dev);
  idoc_tensor *out = op_out_like(c, q);
  int64_t ls[2] = {n_heads, q->shape[0]};
  idoc_tensor *lse = op_out(c, IDOC_F32, 2, ls);
  K(q, attention_fwd)(out, lse, q, k, v, sq->dev, sk->dev, n_heads, n_kv_heads, causal, scale);
  idoc_tensor *in[3] = {q, k, v};
  if (idoc_needs_grad(c, in, 3)) {
    idoc_node *n = idoc_record(c, "attention", attention_bw, out, in, 3);
    n->saved[0] = lse;
    n->saved[1] = sq->dev;
    n->saved[2] = sk->dev;
    n->i[0] = n_heads;
    n->i[1] = n_kv_heads;
    n->i[2] = causal;
    n->f[0] = scale;
  }
  return out;
}
