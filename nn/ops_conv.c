// Differentiable 2-D convolution and transposed convolution (NCHW).
#include "nn/ops_internal.h"

static void conv_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  K(x, conv2d_bwd)
  (idoc_grad(c, x), idoc_grad(c, w), idoc_grad(c, b), n->out->grad, x, w, (int)n->i[0]);
}

idoc_tensor *idoc_conv2d(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b, int pad) {
  OP_REQUIRE(x->ndim == 4 && w->ndim == 4 && w->shape[1] == x->shape[1] &&
                 w->shape[2] == w->shape[3] && pad >= 0,
             "conv2d", x, w);
  OP_REQUIRE(x->dtype == w->dtype && idoc_dev_eq(x->dev, w->dev), "conv2d", x, w);
  OP_REQUIRE(!b || (b->ndim == 1 && b->shape[0] == w->shape[0] && b->dtype == w->dtype &&
                    idoc_dev_eq(b->dev, w->dev)),
             "conv2d", w, b);
  int64_t k = w->shape[2], ho = x->shape[2] + 2 * pad - k + 1, wo = x->shape[3] + 2 * pad - k + 1;
  OP_REQUIRE(ho > 0 && wo > 0, "conv2d", x, w);
  idoc_tensor *y = op_out(c, x->dtype, 4, (int64_t[]){x->shape[0], w->shape[0], ho, wo});
  K(x, conv2d_fwd)(y, x, w, b, pad);
  idoc_tensor *in[3] = {x, w, b};
  if (idoc_needs_grad(c, in, 3)) idoc_record(c, "conv2d", conv_bw, y, in, 3)->i[0] = pad;
  return y;
}

static void convt_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  K(x, conv_transpose2d_bwd)
  (idoc_grad(c, x), idoc_grad(c, w), idoc_grad(c, b), n->out->grad, x, w, (int)n->i[0],
   (int)n->i[1]);
}

idoc_tensor *idoc_conv_transpose2d(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b,
                                   int stride, int pad, int output_padding) {
  OP_REQUIRE(x->ndim == 4 && w->ndim == 4 && w->shape[0] == x->shape[1] &&
                 w->shape[2] == w->shape[3] && stride >= 1 && pad >= 0 && output_padding >= 0 &&
                 output_padding < stride,
             "conv_transpose2d", x, w);
  OP_REQUIRE(x->dtype == w->dtype && idoc_dev_eq(x->dev, w->dev), "conv_transpose2d", x, w);
  OP_REQUIRE(!b || (b->ndim == 1 && b->shape[0] == w->shape[1] && b->dtype == w->dtype &&
                    idoc_dev_eq(b->dev, w->dev)),
             "conv_transpose2d", w, b);
  int64_t k = w->shape[2];
  int64_t ho = (x->shape[2] - 1) * stride - 2 * pad + k + output_padding;
  int64_t wo = (x->shape[3] - 1) * stride - 2 * pad + k + output_padding;
  OP_REQUIRE(ho > 0 && wo > 0, "conv_transpose2d", x, w);
  idoc_tensor *y = op_out(c, x->dtype, 4, (int64_t[]){x->shape[0], w->shape[1], ho, wo});
  K(x, conv_transpose2d_fwd)(y, x, w, b, stride, pad);
  idoc_tensor *in[3] = {x, w, b};
  if (idoc_needs_grad(c, in, 3)) {
    idoc_node *n = idoc_record(c, "conv_transpose2d", convt_bw, y, in, 3);
    n->i[0] = stride;
    n->i[1] = pad;
  }
  return y;
}
