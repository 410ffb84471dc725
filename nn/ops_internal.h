// Helpers shared by the op wrappers in nn/ops_*.c (not part of the public API).
#pragma once
#include "kernels/ops.h"
#include "nn/ops.h"

// Shape/dtype/device precondition of an op: aborts naming the op and its operands.
#define OP_REQUIRE(cond, op, ...)                                                                  \
  do {                                                                                             \
    if (!(cond)) idoc_op_fail(op, #cond, __VA_ARGS__, NULL);                                       \
  } while (0)
// Prints "op: condition failed: a=f32[2,3]@cpu b=..." for the given tensors (NULL-terminated).
_Noreturn void idoc_op_fail(const char *op, const char *cond, ...);

// A fresh output of the given shape in the step arena, same device as the context.
static inline idoc_tensor *op_out(idoc_ctx *c, idoc_dtype dt, int ndim, const int64_t *shape) {
  return idoc_tensor_new(c->act, dt, ndim, shape);
}
static inline idoc_tensor *op_out_like(idoc_ctx *c, const idoc_tensor *x) {
  return idoc_tensor_new(c->act, x->dtype, x->ndim, x->shape);
}
static inline idoc_tensor *op_scalar(idoc_ctx *c) {
  return idoc_tensor_new(c->act, IDOC_F32, 0, NULL);
}
#define K(t, name) IDOC_K((t)->dev, name)

// Shared by the cross-entropy ops (ops_loss.c, ops_head.c): the rows of *targets whose target
// is not ignore_index, counted on the host (host targets are then uploaded once, to the device
// of `on`); and the mean of the per-row losses over `kept` rows (0 when none), on `on`'s device.
int64_t op_ce_kept(idoc_ctx *c, idoc_tensor **targets, int ignore_index, const idoc_tensor *on);
idoc_tensor *op_ce_mean(idoc_ctx *c, const idoc_tensor *on, const idoc_tensor *losses,
                        int64_t kept);
