#include "nn/param.h"

#include <stdlib.h>
#include <string.h>

idoc_params *idoc_params_new(idoc_device dev) {
  idoc_params *ps = idoc_xcalloc(1, sizeof *ps);
  ps->dev = dev;
  // Blocks from 1 MiB doubling to 256 MiB: a tiny model holds a few MiB of device memory (the
  // simulator guards every byte of it on each kernel), a 3B one still needs few allocations.
  size_t first = (size_t)1 << 20, most = (size_t)256 << 20;
  ps->weights = idoc_arena_new_growing("parameters", dev, first, most);
  ps->grads = idoc_arena_new("gradients", dev, 256); // laid out by idoc_params_alloc_grads
  ps->state = idoc_arena_new_growing("optimizer", dev, first, most);
  return ps;
}

void idoc_params_free(idoc_params *ps) {
  if (!ps) return;
  idoc_arena_free(ps->weights);
  idoc_arena_free(ps->grads);
  idoc_arena_free(ps->state);
  free(ps->p);
  free(ps);
}

idoc_param *idoc_params_find(idoc_params *ps, const char *name) {
  for (int i = 0; i < ps->n; i++)
    if (!strcmp(ps->p[i].w->name, name)) return &ps->p[i];
  return NULL;
}

idoc_tensor *idoc_param_new(idoc_params *ps, const char *name, idoc_dtype dt, int ndim,
                            const int64_t *shape) {
  IDOC_CHECK(!idoc_params_find(ps, name), "duplicate parameter name '%s'", name);
  if (ps->n == ps->cap) {
    ps->cap = ps->cap ? 2 * ps->cap : 64;
    ps->p = idoc_xrealloc(ps->p, (size_t)ps->cap * sizeof *ps->p);
  }
  idoc_tensor *w = idoc_tensor_new(ps->weights, dt, ndim, shape);
  size_t nl = strlen(name) + 1;
  char *nm = idoc_arena_alloc_host(ps->weights, nl);
  memcpy(nm, name, nl);
  w->name = nm;
  w->requires_grad = true;
  idoc_param *p = &ps->p[ps->n++];
  memset(p, 0, sizeof *p);
  p->w = w;
  p->trainable = true;
  p->weight_decay_mult = ndim >= 2 ? 1.0f : 0.0f;
  p->lr_mult = 1.0f;
  return w;
}

int idoc_params_set_trainable(idoc_params *ps, const char *prefix, bool trainable) {
  int k = 0;
  size_t n = strlen(prefix);
  for (int i = 0; i < ps->n; i++) {
    if (strncmp(ps->p[i].w->name, prefix, n)) continue;
    ps->p[i].trainable = trainable;
    ps->p[i].w->requires_grad = trainable;
    k++;
  }
  return k;
}

// What idoc_arena_alloc takes for n bytes: n rounded up to its 256-byte alignment, at least 256.
static size_t arena_bytes(size_t n) { return n ? (n + 255) / 256 * 256 : 256; }

void idoc_params_alloc_grads(idoc_params *ps) {
  bool match = true;
  size_t bytes = 0;
  for (int i = 0; i < ps->n; i++) {
    idoc_param *p = &ps->p[i];
    p->w->requires_grad = p->trainable;
    match &= (p->w->grad != NULL) == p->trainable;
    if (p->trainable) bytes += arena_bytes(idoc_nbytes(p->w));
  }
  if (match) return;
  // The arena cannot free one buffer, so a changed set is laid out again, in one block of
  // exactly the buffers' size (the arena's 256-byte alignment included): no tail of a growing
  // block is wasted, and a frozen parameter's old buffer is returned to the system.
  idoc_arena_free(ps->grads);
  ps->grads = idoc_arena_new("gradients", ps->dev, bytes ? bytes : 256);
  for (int i = 0; i < ps->n; i++) {
    idoc_tensor *w = ps->p[i].w;
    w->grad = ps->p[i].trainable ? idoc_tensor_new(ps->grads, w->dtype, w->ndim, w->shape) : NULL;
  }
  idoc_arena_zero(ps->grads);
}

void idoc_params_zero_grad(idoc_params *ps) {
  // The gradient arena holds nothing but gradients: one memset per block instead of one per
  // parameter.
  idoc_arena_zero(ps->grads);
}

int64_t idoc_params_count(const idoc_params *ps, bool trainable_only) {
  int64_t n = 0;
  for (int i = 0; i < ps->n; i++)
    if (!trainable_only || ps->p[i].trainable) n += idoc_numel(ps->p[i].w);
  return n;
}

void idoc_params_init_adam(idoc_params *ps) {
  for (int i = 0; i < ps->n; i++) {
    idoc_param *p = &ps->p[i];
    if (!p->trainable || p->m) continue;
    p->m = idoc_tensor_zeros(ps->state, IDOC_F32, p->w->ndim, p->w->shape);
    p->v = idoc_tensor_zeros(ps->state, IDOC_F32, p->w->ndim, p->w->shape);
  }
}
