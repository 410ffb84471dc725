// idoc-requires: cuda cudnn
// CUDA convolutions (cuDNN, kernels/cuda/conv.cu) against the CPU reference (kernels/cpu/conv.c),
// harness tests/unit/cuda_parity_util.h: conv2d and conv_transpose2d, forward and backward, f32
// and bf16, the heatmap decoder's shapes (3x3 same convolutions; transposed k3 s2 p1 op1 and
// k2 s2, both doubling the map), odd and prime sizes, batches, with and without bias, NULL
// gradient outputs, and accumulation into nonzero gradients.
#include "tests/unit/cuda_parity_util.h"

enum { G_DX = 1, G_DW = 2, G_DB = 4, G_ALL = 7 };

static idoc_tensor *hmaybe(idoc_dtype dt, bool want, int nd, const int64_t *s) {
  return want ? hrand(dt, nd, s, 1.0f) : NULL;
}
static idoc_tensor *upmaybe(const idoc_tensor *h, idoc_dtype dt) { return h ? up(h, dt) : NULL; }

static void compare_grads(const char *kernel, idoc_dtype dt, const char *shape, idoc_tensor *gdx,
                          idoc_tensor *dx, idoc_tensor *gdw, idoc_tensor *dw, idoc_tensor *gdb,
                          idoc_tensor *db) {
  if (dx) compare(kernel, dt, shape, "dx", gdx, dx, tol(dt));
  if (dw) compare(kernel, dt, shape, "dw", gdw, dw, tol(dt));
  if (db) compare(kernel, dt, shape, "db", gdb, db, tol(dt));
}

// x [B, Ci, ih, iw] * w [Co, Ci, k, k] (pad p, stride 1) -> y [B, Co, ih + 2p - k + 1, ...].
// Weights ~ 1/sqrt(fan-in) keep every output O(1); gradients start from N(0, 1), the size of
// what is added, so the accumulation is compared without cancellation.
static void case_conv(idoc_dtype dt, int64_t B, int64_t Ci, int64_t ih, int64_t iw, int64_t Co,
                      int k, int pad, bool bias, int grads) {
  int64_t Ho = ih + 2 * pad - k + 1, Wo = iw + 2 * pad - k + 1;
  char shape[64];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld->%lld k%d p%d%s g%d", (long long)B,
           (long long)Ci, (long long)ih, (long long)iw, (long long)Co, k, pad, bias ? " +b" : "",
           grads);
  int64_t xs[4] = {B, Ci, ih, iw}, ws[4] = {Co, Ci, k, k}, ys[4] = {B, Co, Ho, Wo};
  idoc_tensor *x = hrand(dt, 4, xs, 1.0f);
  idoc_tensor *w = hrand(dt, 4, ws, 1.0f / sqrtf((float)(Ci * k * k > 0 ? Ci * k * k : 1)));
  idoc_tensor *b = bias ? hrand(dt, 1, &Co, 1.0f) : NULL;
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, 4, ys);
  cpu_conv2d_fwd(y, x, w, b, pad);
  idoc_tensor *gx = up(x, dt), *gw = up(w, dt), *gb = upmaybe(b, dt), *gy = dev_new(dt, 4, ys);
  IDOC_K(GPU, conv2d_fwd)(gy, gx, gw, gb, pad);
  compare("conv2d_fwd", dt, shape, "y", gy, y, tol(dt));

  idoc_tensor *dy = hrand(dt, 4, ys, 1.0f), *dx = hmaybe(dt, grads & G_DX, 4, xs);
  idoc_tensor *dw = hmaybe(dt, grads & G_DW, 4, ws),
              *db = hmaybe(dt, bias && (grads & G_DB), 1, &Co);
  idoc_tensor *gdy = up(dy, dt), *gdx = upmaybe(dx, dt), *gdw = upmaybe(dw, dt);
  idoc_tensor *gdb = upmaybe(db, dt);
  cpu_conv2d_bwd(dx, dw, db, dy, x, w, pad);
  IDOC_K(GPU, conv2d_bwd)(gdx, gdw, gdb, gdy, gx, gw, pad);
  compare_grads("conv2d_bwd", dt, shape, gdx, dx, gdw, dw, gdb, db);
  reset();
}

// x [B, Ci, ih, iw] with w [Ci, Co, k, k] -> y [B, Co, (ih-1)s - 2p + k + op, ...] (PyTorch's
// ConvTranspose2d; the output padding op only sets y's size).
static void case_convt(idoc_dtype dt, int64_t B, int64_t Ci, int64_t ih, int64_t iw, int64_t Co,
                       int k, int stride, int pad, int opad, bool bias, int grads) {
  int64_t Ho = (ih - 1) * stride - 2 * pad + k + opad, Wo = (iw - 1) * stride - 2 * pad + k + opad;
  char shape[64];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld->%lld k%d s%d p%d op%d%s g%d", (long long)B,
           (long long)Ci, (long long)ih, (long long)iw, (long long)Co, k, stride, pad, opad,
           bias ? " +b" : "", grads);
  int64_t xs[4] = {B, Ci, ih, iw}, ws[4] = {Ci, Co, k, k}, ys[4] = {B, Co, Ho, Wo};
  idoc_tensor *x = hrand(dt, 4, xs, 1.0f);
  // Each output sums about Ci * (k/s)^2 products.
  float fan = (float)Ci * (float)(k * k) / (float)(stride * stride);
  idoc_tensor *w = hrand(dt, 4, ws, 1.0f / sqrtf(fan > 1.0f ? fan : 1.0f));
  idoc_tensor *b = bias ? hrand(dt, 1, &Co, 1.0f) : NULL;
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, 4, ys);
  cpu_conv_transpose2d_fwd(y, x, w, b, stride, pad);
  idoc_tensor *gx = up(x, dt), *gw = up(w, dt), *gb = upmaybe(b, dt), *gy = dev_new(dt, 4, ys);
  IDOC_K(GPU, conv_transpose2d_fwd)(gy, gx, gw, gb, stride, pad);
  compare("conv_transpose2d_fwd", dt, shape, "y", gy, y, tol(dt));

  idoc_tensor *dy = hrand(dt, 4, ys, 1.0f), *dx = hmaybe(dt, grads & G_DX, 4, xs);
  idoc_tensor *dw = hmaybe(dt, grads & G_DW, 4, ws),
              *db = hmaybe(dt, bias && (grads & G_DB), 1, &Co);
  idoc_tensor *gdy = up(dy, dt), *gdx = upmaybe(dx, dt), *gdw = upmaybe(dw, dt);
  idoc_tensor *gdb = upmaybe(db, dt);
  cpu_conv_transpose2d_bwd(dx, dw, db, dy, x, w, stride, pad);
  IDOC_K(GPU, conv_transpose2d_bwd)(gdx, gdw, gdb, gdy, gx, gw, stride, pad);
  compare_grads("conv_transpose2d_bwd", dt, shape, gdx, dx, gdw, dw, gdb, db);
  reset();
}

int main(void) {
  if (!parity_init(4321)) return t_summary("test_cuda_parity_conv");
  for (int d = 0; d < 2; d++) {
    idoc_dtype dt = d ? IDOC_BF16 : IDOC_F32;
    // conv2d: the decoder's 3x3 same convolutions, then odd sizes, kernels and NULL gradients.
    PARITY(case_conv(dt, 2, 16, 18, 18, 16, 3, 1, true, G_ALL));
    PARITY(case_conv(dt, 1, 32, 19, 23, 24, 3, 1, true, G_ALL));
    PARITY(case_conv(dt, 3, 5, 7, 9, 3, 3, 1, false, G_DX | G_DW));
    PARITY(case_conv(dt, 2, 8, 5, 6, 4, 3, 0, true, G_DW | G_DB)); // valid conv, dx NULL
    PARITY(case_conv(dt, 2, 7, 5, 4, 3, 1, 0, true, G_DX | G_DB)); // 1x1, dw NULL
    PARITY(case_conv(dt, 1, 3, 11, 7, 2, 5, 2, true, G_ALL));
    PARITY(case_conv(dt, 1, 1, 1, 1, 1, 1, 0, true, G_ALL));
    PARITY(case_conv(dt, 2, 4, 3, 3, 5, 3, 2, false, G_ALL)); // pad > k/2: border-only taps
    PARITY(case_conv(dt, 0, 4, 6, 6, 3, 3, 1, true, G_ALL));  // empty batch

    // conv_transpose2d: the decoder's upsampling (k3 s2 p1 op1 -> 2H), k2 s2 (-> 2H), others.
    PARITY(case_convt(dt, 2, 16, 9, 9, 8, 3, 2, 1, 1, true, G_ALL));
    PARITY(case_convt(dt, 1, 32, 13, 11, 16, 3, 2, 1, 1, true, G_ALL));
    PARITY(case_convt(dt, 1, 5, 7, 5, 3, 3, 2, 1, 1, false, G_DX | G_DW));
    PARITY(case_convt(dt, 2, 6, 5, 7, 4, 2, 2, 0, 0, true, G_ALL));
    PARITY(case_convt(dt, 3, 4, 4, 3, 6, 3, 2, 1, 0, true, G_DW | G_DB)); // odd output, dx NULL
    PARITY(case_convt(dt, 1, 3, 6, 5, 5, 3, 1, 1, 0, true, G_DX | G_DB)); // stride 1, dw NULL
    PARITY(case_convt(dt, 2, 3, 5, 5, 2, 4, 2, 1, 0, false, G_ALL));
    PARITY(case_convt(dt, 1, 1, 1, 1, 1, 2, 2, 0, 0, true, G_ALL));
    PARITY(case_convt(dt, 0, 4, 3, 3, 2, 3, 2, 1, 1, true, G_ALL)); // empty batch
  }
  return parity_finish("test_cuda_parity_conv");
}
