#include "nn/autograd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

idoc_ctx *idoc_ctx_new(idoc_device dev, size_t act_block_bytes) {
  idoc_ctx *c = idoc_xcalloc(1, sizeof *c);
  c->dev = dev;
  // On a device the blocks start at 1 MiB and double up to act_block_bytes: a small step holds
  // little device memory (the simulator re-protects every mapped page at each kernel).
  size_t first = (size_t)1 << 20;
  c->act = dev.kind == IDOC_CPU || act_block_bytes <= first
               ? idoc_arena_new("activations", dev, act_block_bytes)
               : idoc_arena_new_growing("activations", dev, first, act_block_bytes);
  c->grad_enabled = true;
  return c;
}

void idoc_ctx_free(idoc_ctx *c) {
  if (!c) return;
  idoc_arena_free(c->act);
  free(c->nodes);
  free(c);
}

void idoc_ctx_reset(idoc_ctx *c) {
  c->n_nodes = 0;
  idoc_arena_reset(c->act);
}

idoc_tensor *idoc_ctx_upload(idoc_ctx *c, const void *host, idoc_dtype dt, int ndim,
                             const int64_t *shape) {
  idoc_tensor *t = idoc_tensor_new(c->act, dt, ndim, shape);
  idoc_tensor_from_host(t, host);
  return t;
}

idoc_tensor *idoc_ctx_upload_i32(idoc_ctx *c, const int32_t *v, int64_t n) {
  return idoc_ctx_upload(c, v, IDOC_I32, 1, &n);
}

idoc_tensor *idoc_ctx_on_device(idoc_ctx *c, idoc_tensor *t) {
  if (idoc_dev_eq(t->dev, c->dev)) return t;
  idoc_tensor *d = idoc_tensor_new(c->act, t->dtype, t->ndim, t->shape);
  idoc_tensor_copy(d, t);
  return d;
}

idoc_tensor *idoc_ctx_on_device_as(idoc_ctx *c, idoc_tensor *t, idoc_dtype dt) {
  if (t->dtype == dt) return idoc_ctx_on_device(c, t);
  idoc_tensor *d = idoc_tensor_new(c->act, dt, t->ndim, t->shape);
  idoc_tensor_convert(d, t);
  return d;
}

const void *idoc_ctx_host_view(idoc_ctx *c, const idoc_tensor *t) {
  if (t->dev.kind == IDOC_CPU) return t->data;
  void *h = idoc_arena_alloc_host(c->act, idoc_nbytes(t));
  idoc_tensor_to_host(t, h);
  return h;
}

bool idoc_no_grad_begin(idoc_ctx *c) {
  bool prev = c->grad_enabled;
  c->grad_enabled = false;
  return prev;
}
void idoc_grad_restore(idoc_ctx *c, bool prev) { c->grad_enabled = prev; }

bool idoc_needs_grad(const idoc_ctx *c, idoc_tensor *const *in, int n) {
  if (!c->grad_enabled) return false;
  for (int i = 0; i < n; i++)
    if (in[i] && in[i]->requires_grad) return true;
  return false;
}

idoc_node *idoc_record(idoc_ctx *c, const char *op, idoc_backward_fn bw, idoc_tensor *out,
                       idoc_tensor *const *in, int n_in) {
  IDOC_CHECK(n_in <= IDOC_NODE_IN, "%s: too many inputs (%d)", op, n_in);
  if (c->n_nodes == c->cap_nodes) { // grows only until the tape reaches its steady size
    c->cap_nodes = c->cap_nodes ? 2 * c->cap_nodes : 1024;
    c->nodes = idoc_xrealloc(c->nodes, (size_t)c->cap_nodes * sizeof *c->nodes);
  }
  idoc_node *n = idoc_arena_alloc_host(c->act, sizeof *n);
  n->op = op;
  n->backward = bw;
  n->out = out;
  n->n_in = n_in;
  for (int i = 0; i < n_in; i++)
    n->in[i] = in[i];
  out->requires_grad = true;
  c->nodes[c->n_nodes++] = n;
  return n;
}

void *idoc_save_bytes(idoc_ctx *c, const void *src, size_t n) {
  void *p = idoc_arena_alloc_host(c->act, n);
  if (n) memcpy(p, src, n);
  return p;
}

idoc_tensor *idoc_grad(idoc_ctx *c, idoc_tensor *t) {
  if (!t || !t->requires_grad) return NULL;
  if (!t->grad) {
    IDOC_CHECK(idoc_dev_eq(t->dev, idoc_arena_device(c->act)),
               "gradient of a tensor on %s requested in a context on %s", idoc_device_name(t->dev),
               idoc_device_name(idoc_arena_device(c->act)));
    t->grad = idoc_tensor_zeros(c->act, t->dtype, t->ndim, t->shape);
  }
  return t->grad;
}

void idoc_backward_range(idoc_ctx *c, int first_node) {
  bool prev = idoc_no_grad_begin(c); // backward itself is never recorded
  for (int i = c->n_nodes - 1; i >= first_node; i--) {
    idoc_node *n = c->nodes[i];
    if (n->out->grad || n->run_always) n->backward(c, n); // else no gradient reached it
  }
  idoc_grad_restore(c, prev);
}

void idoc_backward(idoc_ctx *c, idoc_tensor *loss) {
  IDOC_CHECK(idoc_numel(loss) == 1, "backward: the loss must be a scalar");
  IDOC_CHECK(loss->requires_grad, "backward: the loss does not depend on anything trainable");
  idoc_tensor *g = idoc_grad(c, loss);
  idoc_tensor_fill(g, 1.0f);
  idoc_backward_range(c, 0);
}

// ---- gradient checkpointing -------------------------------------------------------------------
typedef struct {
  idoc_block_fn fn;
  void *ud;
  int n_in, n_out;
  idoc_tensor **in, **out;
} ckpt_data;

static void ckpt_backward(idoc_ctx *c, idoc_node *node) {
  ckpt_data *d = node->p;
  int first = c->n_nodes;
  bool any = false;
  for (int j = 0; j < d->n_out; j++)
    any |= d->out[j]->grad != NULL;
  if (!any) return;
  // Input gradients must outlive the recomputation's activations, so they are allocated first.
  for (int i = 0; i < d->n_in; i++)
    idoc_grad(c, d->in[i]);
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  idoc_tensor **re = idoc_arena_alloc_host(c->act, (size_t)d->n_out * sizeof *re);
  bool prev = c->grad_enabled;
  c->grad_enabled = true;
  d->fn(c, d->ud, d->in, d->n_in, re, d->n_out);
  c->grad_enabled = false;
  for (int j = 0; j < d->n_out; j++) {
    if (!d->out[j]->grad || !re[j]->requires_grad) continue;
    idoc_tensor_copy(idoc_grad(c, re[j]), d->out[j]->grad);
  }
  idoc_backward_range(c, first);
  c->n_nodes = first; // drop the recomputed nodes and their activations
  idoc_arena_reset_to(c->act, mark);
  c->grad_enabled = prev;
}

static bool overlap(const idoc_tensor *a, const idoc_tensor *b) {
  uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
  return a0 < b0 + idoc_nbytes(b) && b0 < a0 + idoc_nbytes(a);
}

// Drops what a block allocated after `mark` except its outputs, which move down to the mark:
// the point of checkpointing is that the block's intermediates do not stay in the step arena
// until backward. Each output goes through a staging copy above everything the block left, so
// no copy reads memory it has just overwritten; headers are rebuilt (the old ones lay above the
// mark too).
static void keep_outputs_only(idoc_ctx *c, idoc_arena_mark mark, idoc_tensor **out, int n_out) {
  idoc_tensor **stage = idoc_xmalloc((size_t)n_out * sizeof *stage);
  for (int j = 0; j < n_out; j++) {
    stage[j] = idoc_tensor_like(c->act, out[j]);
    idoc_tensor_copy(stage[j], out[j]);
  }
  idoc_tensor *st = idoc_xmalloc((size_t)n_out * sizeof *st); // the staging headers by value
  for (int j = 0; j < n_out; j++)
    st[j] = *stage[j];
  idoc_arena_reset_to(c->act, mark);
  for (int j = 0; j < n_out; j++) {
    out[j] = idoc_tensor_like(c->act, &st[j]);
    for (int k = 0; k < n_out; k++)
      IDOC_CHECK(!overlap(out[j], &st[k]), "checkpoint: output %d would overwrite staged output %d",
                 j, k);
  }
  for (int j = 0; j < n_out; j++)
    idoc_tensor_copy(out[j], &st[j]);
  free(st);
  free(stage);
}

void idoc_checkpoint(idoc_ctx *c, idoc_block_fn fn, void *ud, idoc_tensor *const *in, int n_in,
                     idoc_tensor **out, int n_out) {
  bool rec = c->grad_enabled;
  c->grad_enabled = false;
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  fn(c, ud, in, n_in, out, n_out);
  keep_outputs_only(c, mark, out, n_out);
  c->grad_enabled = rec;
  if (!rec) return;
  // The block may read trainable parameters that are not among `in`, so it is recorded
  // whenever grad mode is on; outputs become differentiable leaves of this one node.
  ckpt_data *d = idoc_arena_alloc_host(c->act, sizeof *d);
  d->fn = fn;
  d->ud = ud;
  d->n_in = n_in;
  d->n_out = n_out;
  d->in = idoc_save_bytes(c, in, (size_t)n_in * sizeof *in);
  d->out = idoc_save_bytes(c, out, (size_t)n_out * sizeof *out);
  idoc_node *n = idoc_record(c, "checkpoint", ckpt_backward, out[0], NULL, 0);
  n->p = d;
  n->run_always = true; // any of the outputs may carry the gradient
  for (int j = 0; j < n_out; j++)
    out[j]->requires_grad = true;
}
