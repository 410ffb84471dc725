// Differentiable activations (and sin / cos) and SwiGLU.
#include "nn/ops_internal.h"

static const char *act_names[] = {"silu", "gelu", "relu", "sigmoid", "sin", "cos"};

static void act_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dx = idoc_grad(c, n->in[0]);
  if (dx) K(dx, act_bwd)(dx, n->out->grad, n->in[0], n->saved[0], (int)n->i[0]);
}

static idoc_tensor *act(idoc_ctx *c, idoc_tensor *x, int kind) {
  idoc_tensor *y = op_out_like(c, x);
  K(x, act_fwd)(y, x, kind);
  idoc_tensor *in[1] = {x};
  if (idoc_needs_grad(c, in, 1)) {
    idoc_node *n = idoc_record(c, act_names[kind], act_bw, y, in, 1);
    n->i[0] = kind;
    n->saved[0] = kind == IDOC_ACT_SIGMOID ? y : NULL;
  }
  return y;
}

idoc_tensor *idoc_silu(idoc_ctx *c, idoc_tensor *x) { return act(c, x, IDOC_ACT_SILU); }
idoc_tensor *idoc_gelu(idoc_ctx *c, idoc_tensor *x) { return act(c, x, IDOC_ACT_GELU); }
idoc_tensor *idoc_relu(idoc_ctx *c, idoc_tensor *x) { return act(c, x, IDOC_ACT_RELU); }
idoc_tensor *idoc_sigmoid(idoc_ctx *c, idoc_tensor *x) { return act(c, x, IDOC_ACT_SIGMOID); }
idoc_tensor *idoc_sin(idoc_ctx *c, idoc_tensor *x) { return act(c, x, IDOC_ACT_SIN); }
idoc_tensor *idoc_cos(idoc_ctx *c, idoc_tensor *x) { return act(c, x, IDOC_ACT_COS); }

static void swiglu_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dy = n->out->grad;
  K(dy, swiglu_bwd)(idoc_grad(c, n->in[0]), idoc_grad(c, n->in[1]), dy, n->in[0], n->in[1]);
}

idoc_tensor *idoc_swiglu(idoc_ctx *c, idoc_tensor *gate, idoc_tensor *up) {
  OP_REQUIRE(idoc_same_shape(gate, up) && gate->dtype == up->dtype, "swiglu", gate, up);
  idoc_tensor *y = op_out_like(c, gate);
  K(gate, swiglu_fwd)(y, gate, up);
  idoc_tensor *in[2] = {gate, up};
  if (idoc_needs_grad(c, in, 2)) idoc_record(c, "swiglu", swiglu_bw, y, in, 2);
  return y;
}
