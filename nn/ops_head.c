// The LM head fused with its loss, a chunk of rows at a time: the [chunk, V] logits exist only
// inside the loop, in forward and again (recomputed) in backward, so no [T, V] buffer is ever
// materialised. The price is the head's GEMM once more in backward (about 3% of a 3B step).
#include "nn/ops_internal.h"

static idoc_tensor *rows(idoc_ctx *c, idoc_tensor *t, int64_t r0, int64_t m) {
  return t ? idoc_tensor_rows(c->act, t, r0, m) : NULL;
}

// logits = h[r0, r0 + m) w^T in the step arena.
static idoc_tensor *chunk_logits(idoc_ctx *c, idoc_tensor *h, idoc_tensor *w, int64_t r0,
                                 int64_t m) {
  idoc_tensor *y = op_out(c, h->dtype, 2, (int64_t[]){m, w->shape[0]});
  K(h, linear_fwd)(y, rows(c, h, r0, m), w, NULL);
  return y;
}

static bool chunked(const idoc_tensor *h, int64_t chunk) {
  return chunk > 0 && chunk < h->shape[0];
}

static int64_t chunk_len(int64_t N, int64_t r0, int64_t chunk) {
  return N - r0 < chunk ? N - r0 : chunk;
}

// Fills dl (zeroed) with the loss's gradient for the logits lg of rows [r0, r0 + m).
typedef void (*chunk_grad_fn)(idoc_ctx *c, idoc_node *n, idoc_tensor *dl, idoc_tensor *lg,
                              int64_t r0, int64_t m);

// The backward of both ops: per chunk the logits again, their gradient, then the hidden
// states' and the head's (both allocated before the chunks, which are released one by one).
static void head_bw(idoc_ctx *c, idoc_node *n, int64_t chunk, chunk_grad_fn grad) {
  idoc_tensor *h = n->in[0], *w = n->in[1];
  idoc_tensor *dh = idoc_grad(c, h), *dw = idoc_grad(c, w);
  if (!dh && !dw) return;
  int64_t N = h->shape[0];
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    int64_t m = chunk_len(N, r0, chunk);
    idoc_arena_mark mark = idoc_arena_get_mark(c->act);
    idoc_tensor *lg = chunk_logits(c, h, w, r0, m), *dl = idoc_tensor_zeros_like(c->act, lg);
    grad(c, n, dl, lg, r0, m);
    K(h, linear_bwd)(rows(c, dh, r0, m), dw, NULL, dl, rows(c, h, r0, m), w);
    idoc_arena_reset_to(c->act, mark);
  }
}

static void head_require(const char *op, idoc_ctx *c, idoc_tensor *h, idoc_tensor *w,
                         idoc_tensor *targets) {
  OP_REQUIRE(h->ndim == 2 && w->ndim == 2 && h->shape[1] == w->shape[1] && h->dtype == w->dtype &&
                 idoc_dev_eq(h->dev, w->dev) && idoc_dev_eq(h->dev, c->dev),
             op, h, w);
  OP_REQUIRE(targets->dtype == IDOC_I32 && idoc_numel(targets) == h->shape[0], op, h, targets);
}

// ---- cross-entropy
// -------------------------------------------------------------------------------
static void hce_grad(idoc_ctx *c, idoc_node *n, idoc_tensor *dl, idoc_tensor *lg, int64_t r0,
                     int64_t m) {
  K(lg, cross_entropy_mean_bwd)
  (dl, lg, rows(c, n->saved[0], r0, m), rows(c, n->in[2], r0, m), (int)n->i[0], n->out->grad,
   (float)n->f[0]);
}
static void hce_bw(idoc_ctx *c, idoc_node *n) { head_bw(c, n, n->i[1], hce_grad); }

idoc_tensor *idoc_head_cross_entropy(idoc_ctx *c, idoc_tensor *h, idoc_tensor *w,
                                     idoc_tensor *targets, int ignore_index, int64_t chunk) {
  head_require("head_cross_entropy", c, h, w, targets);
  if (!chunked(h, chunk))
    return idoc_cross_entropy(c, idoc_linear(c, h, w, NULL), targets, ignore_index);
  int64_t N = h->shape[0], kept = op_ce_kept(c, &targets, ignore_index, h);
  idoc_tensor *losses = op_out(c, IDOC_F32, 1, &N), *lse = op_out(c, IDOC_F32, 1, &N);
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    int64_t m = chunk_len(N, r0, chunk);
    idoc_arena_mark mark = idoc_arena_get_mark(c->act);
    K(h, cross_entropy_fwd)
    (rows(c, losses, r0, m), rows(c, lse, r0, m), chunk_logits(c, h, w, r0, m),
     rows(c, targets, r0, m), ignore_index);
    idoc_arena_reset_to(c->act, mark);
  }
  idoc_tensor *loss = op_ce_mean(c, h, losses, kept);
  idoc_tensor *in[3] = {h, w, targets};
  if (idoc_needs_grad(c, in, 2)) {
    idoc_node *nd = idoc_record(c, "head_cross_entropy", hce_bw, loss, in, 3);
    nd->saved[0] = lse;
    nd->f[0] = (double)kept;
    nd->i[0] = ignore_index;
    nd->i[1] = chunk;
  }
  return loss;
}

// ---- token log-probabilities
// ---------------------------------------------------------------------
static void htlp_grad(idoc_ctx *c, idoc_node *n, idoc_tensor *dl, idoc_tensor *lg, int64_t r0,
                      int64_t m) {
  idoc_tensor *ent = n->saved[1];
  K(lg, token_logprobs_bwd)
  (dl, lg, rows(c, n->saved[0], r0, m), rows(c, n->in[2], r0, m), rows(c, ent, r0, m),
   rows(c, n->out->grad, r0, m), rows(c, ent ? ent->grad : NULL, r0, m));
}
static void htlp_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *ent = n->saved[1];
  if (!n->out->grad && !(ent && ent->grad)) return; // neither output reached the loss
  head_bw(c, n, n->i[0], htlp_grad);
}

idoc_tensor *idoc_head_token_logprobs(idoc_ctx *c, idoc_tensor *h, idoc_tensor *w,
                                      idoc_tensor *targets, idoc_tensor **entropy, int64_t chunk) {
  head_require("head_token_logprobs", c, h, w, targets);
  if (!chunked(h, chunk))
    return idoc_token_logprobs(c, idoc_linear(c, h, w, NULL), targets, entropy);
  OP_REQUIRE(idoc_dev_eq(h->dev, targets->dev), "head_token_logprobs", h, targets);
  int64_t N = h->shape[0];
  idoc_tensor *logp = op_out(c, IDOC_F32, 1, &N), *lse = op_out(c, IDOC_F32, 1, &N);
  idoc_tensor *ent = entropy ? op_out(c, IDOC_F32, 1, &N) : NULL;
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    int64_t m = chunk_len(N, r0, chunk);
    idoc_arena_mark mark = idoc_arena_get_mark(c->act);
    K(h, token_logprobs_fwd)
    (rows(c, logp, r0, m), rows(c, lse, r0, m), rows(c, ent, r0, m), chunk_logits(c, h, w, r0, m),
     rows(c, targets, r0, m));
    idoc_arena_reset_to(c->act, mark);
  }
  idoc_tensor *in[3] = {h, w, targets};
  if (idoc_needs_grad(c, in, 2)) {
    idoc_node *nd = idoc_record(c, "head_token_logprobs", htlp_bw, logp, in, 3);
    nd->saved[0] = lse;
    nd->saved[1] = ent;
    nd->i[0] = chunk;
    if (ent) {
      ent->requires_grad = true;
      nd->run_always = true; // the gradient may arrive through the entropy alone
    }
  }
  if (entropy) *entropy = ent;
  return logp;
}
