// The autograd tape and the execution context.
//
// Every differentiable op (nn/ops.h) computes its output with a kernel and, when grad mode is on
// and an input requires grad, records one node: its backward function, inputs, outputs, saved
// tensors and attributes. idoc_backward() walks the tape in reverse; backward functions
// *accumulate* into input gradients (allocated zeroed on first touch, from the step arena).
// Parameters get their .grad from the parameter store (nn/param.h) and keep it across steps.
#pragma once
#include "kernels/tensor.h"

typedef struct idoc_ctx idoc_ctx;
typedef struct idoc_node idoc_node;
typedef void (*idoc_backward_fn)(idoc_ctx *c, idoc_node *n);

#define IDOC_NODE_IN 6
#define IDOC_NODE_SAVED 6
struct idoc_node {
  const char *op;
  idoc_backward_fn backward;
  idoc_tensor *in[IDOC_NODE_IN];
  int n_in;
  idoc_tensor *out; // the op's output (its .grad is read by backward)
  idoc_tensor *saved[IDOC_NODE_SAVED];
  double f[8];     // float attributes (eps, scale, ...)
  int64_t i[8];    // integer attributes (dims, flags, ...)
  void *p;         // op-specific data copied into the step arena (index arrays, ...)
  bool run_always; // call backward even when out has no gradient (multi-output nodes)
};

struct idoc_ctx {
  idoc_device dev;
  idoc_arena *act; // per-step activations, gradients of activations, tape nodes
  bool grad_enabled;
  idoc_node **nodes;
  int n_nodes, cap_nodes;
};

idoc_ctx *idoc_ctx_new(idoc_device dev, size_t act_block_bytes);
void idoc_ctx_free(idoc_ctx *c);
// Clears the tape and resets the activation arena (call after the optimizer step).
void idoc_ctx_reset(idoc_ctx *c);

// ---- host data on the context's device ------------------------------------------------------
// What the nn layer builds on the host (indices, rotary tables, targets, maps) reaches the
// device as one copy into the step arena; host code never dereferences device memory.
// A new tensor in the step arena holding the bytes at `host` (dtype dt, the given shape).
idoc_tensor *idoc_ctx_upload(idoc_ctx *c, const void *host, idoc_dtype dt, int ndim,
                             const int64_t *shape);
idoc_tensor *idoc_ctx_upload_i32(idoc_ctx *c, const int32_t *v, int64_t n);
// `t` itself when it is on the context's device, else a copy of it there in the step arena
// (inputs given on the host, such as a batch's ids or pixel_values).
idoc_tensor *idoc_ctx_on_device(idoc_ctx *c, idoc_tensor *t);
// The same in dtype dt (f32/bf16/f16), converted as it is copied: f32 pixel_values for a bf16
// model. A device tensor of another dtype is converted through the host.
idoc_tensor *idoc_ctx_on_device_as(idoc_ctx *c, idoc_tensor *t, idoc_dtype dt);
// The bytes of `t` on the host: its own storage on the CPU; for a device tensor a copy in the
// step arena's host memory, i.e. a device-to-host read that callers make only where the value
// is needed on the host (counts, positions) and avoid by passing host tensors.
const void *idoc_ctx_host_view(idoc_ctx *c, const idoc_tensor *t);

// Grad mode. idoc_no_grad_begin returns the previous mode for idoc_grad_restore.
bool idoc_no_grad_begin(idoc_ctx *c);
void idoc_grad_restore(idoc_ctx *c, bool prev);

// True when an op on these inputs must be recorded.
bool idoc_needs_grad(const idoc_ctx *c, idoc_tensor *const *in, int n);
// Appends a node (zeroed, allocated in the step arena); the op fills in what backward needs.
// Marks `out` as requiring grad.
idoc_node *idoc_record(idoc_ctx *c, const char *op, idoc_backward_fn bw, idoc_tensor *out,
                       idoc_tensor *const *in, int n_in);
// Copy of `n` bytes into the step arena (host), for node->p.
void *idoc_save_bytes(idoc_ctx *c, const void *src, size_t n);

// The gradient buffer of `t`, allocated zeroed in the step arena on first use; NULL when `t`
// does not require grad (so backward functions skip inputs nobody needs).
idoc_tensor *idoc_grad(idoc_ctx *c, idoc_tensor *t);

// Backpropagates from a scalar `loss` (seeds d loss = 1) or, with idoc_backward_from, from
// outputs whose .grad was set by the caller.
void idoc_backward(idoc_ctx *c, idoc_tensor *loss);
void idoc_backward_range(idoc_ctx *c, int first_node);

// Gradient checkpointing: runs fn(c, ud, in, out) without recording, keeping only `out`
// (n_out tensors the function returns through the array; they are moved to where the block's
// allocations began, and everything else it allocated is released, so fn must not return a
// tensor whose storage lies inside another output's). In backward the block is run again
// with recording on, and its outputs' gradients are propagated through the recomputed nodes,
// which are then dropped. fn must be deterministic and may read parameters freely.
typedef void (*idoc_block_fn)(idoc_ctx *c, void *ud, idoc_tensor *const *in, int n_in,
                              idoc_tensor **out, int n_out);
void idoc_checkpoint(idoc_ctx *c, idoc_block_fn fn, void *ud, idoc_tensor *const *in, int n_in,
                     idoc_tensor **out, int n_out);
